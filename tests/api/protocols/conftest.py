"""One served stack per module for the protocol endpoints: keys on, two agents, a gated tool."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from keel.deltas import InProcessDeltaBus
from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.api.live import LiveApi, live_api

ADMIN = "protocols-admin-0123456789abcdef"
CLIENT = "protocols-client-0123456789abcdef"


def auth(key: str = ADMIN, user: str | None = None) -> dict[str, str]:
    """Headers for `key`, acting for `user`."""
    return {"Authorization": f"Bearer {key}", **({"X-User-Id": user} if user else {})}


def two_agents() -> Formation:
    """`assistant` (the default) whose `lookup` waits for approval, and `billing`."""
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [
                {"name": "assistant", "description": "Answers anything", "tools": ["lookup"]},
                {"name": "billing", "description": "Answers billing questions"},
            ],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
        },
        env={},
    )


@contextlib.asynccontextmanager
async def served(
    env: WorkflowEnvironment, data_dir: Path, **settings: Any
) -> AsyncIterator[LiveApi]:
    """The API on a real port with its workers and an in-process delta bus."""
    suffix = uuid.uuid4().hex[:8]
    store = SqliteTranscriptStore(data_dir / "keel.db")
    configured = Settings(
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        max_sessions_per_user=0,
        rate_limit_per_minute=0,
        **settings,
    )
    try:
        async with live_api(
            env.client, configured, two_agents(), store, deltas=InProcessDeltaBus()
        ) as api:
            yield api
    finally:
        await store.close()


@pytest.fixture(scope="module")
async def live(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveApi]:
    """The served API with keys required: `ADMIN`, and `CLIENT` for any user."""
    data_dir = tmp_path_factory.mktemp("protocols")
    async with served(temporal_env, data_dir, admin_keys=ADMIN, client_keys=CLIENT) as api:
        yield api


async def pending_approval(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    """The session's first pending approval, once there is one."""
    for _ in range(200):
        listed = await http.get(f"/v1/sessions/{session_id}/approvals", headers=auth())
        assert listed.status_code == 200, listed.text
        if approvals := listed.json()["approvals"]:
            first: dict[str, Any] = approvals[0]
            return first
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def approve(http: httpx.AsyncClient, session_id: str, approval_id: str) -> None:
    """Approve through Keel's approvals API."""
    url = f"/v1/sessions/{session_id}/approvals/{approval_id}"
    decided = await http.post(url, json={"decision": "approve"}, headers=auth())
    assert decided.status_code == 200, decided.text
