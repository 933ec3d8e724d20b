"""The API the client tests call: served on a real port with its workers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from keel.deltas import InProcessDeltaBus
from keel.formation import TriggerConfig
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.api.live import live_api
from tests.formations import gated_lookup

SECRET = "whsec-sdk-0123456789"
"""The signing secret of the `signed` trigger."""
LOOKUP = '[[call lookup {"invoice": 7}]] [[say done]]'
"""A turn whose `lookup` call waits for an approval, then answers `done`."""


@contextlib.asynccontextmanager
async def serve_api(temporal_env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[str]:
    """Serve the gated `lookup` formation, with two triggers, and its workers; yields the URL."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=data_dir,
        temporal_address=temporal_env.client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        max_sessions_per_user=0,
    )
    triggers = [
        TriggerConfig(
            name="new-ticket", agent="assistant", template="New ticket: {{ data.title }}"
        ),
        TriggerConfig(
            name="signed",
            agent="assistant",
            template="Signed {{ data.n }}",
            secret_env="SDK_SECRET",
        ),
    ]
    formation = gated_lookup().model_copy(update={"triggers": triggers})
    store = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SDK_SECRET", SECRET)
        async with live_api(
            temporal_env.client, settings, formation, store, deltas=InProcessDeltaBus()
        ) as api:
            yield str(api.http.base_url)
    await store.close()
