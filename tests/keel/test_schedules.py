"""Scheduled triggers become Temporal Schedules that match the formation."""

from __future__ import annotations

import asyncio
import subprocess

from temporalio.client import Client

from keel.devserver import temporal_binary
from keel.formation import Formation, formation_from_data
from keel.schedules import sync_schedules
from keel.session import SessionResult
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers


def _formation(*triggers: dict[str, str]) -> Formation:
    return formation_from_data(
        {
            "id": "sched-test",
            "models": {"default": {"provider": "echo"}},
            "agents": [{"name": "billing"}],
            "triggers": list(triggers),
        },
        env={},
    )


DAILY = {"name": "daily", "agent": "billing", "template": "Daily report", "schedule": "0 9 * * *"}


def _temporal_schedules(settings: Settings) -> str:
    listed = subprocess.run(
        [str(temporal_binary()), "schedule", "list", "--address", settings.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


async def test_schedules_are_created_run_and_removed_with_the_formation(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(DAILY, {"name": "hook", "agent": "billing", "template": "x"})
    await sync_schedules(client, formation, settings)
    await sync_schedules(client, formation, settings)  # idempotent
    for _ in range(50):  # schedule listing is eventually consistent
        if "keel/sched-test/daily" in await asyncio.to_thread(_temporal_schedules, settings):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the schedule is not listed by `temporal schedule list`")

    handle = client.get_schedule_handle("keel/sched-test/daily")
    async with running_workers(client, settings, formation, store):
        await handle.trigger()
        for _ in range(100):
            runs = (await handle.describe()).info.recent_actions
            if runs:
                break
            await asyncio.sleep(0.1)
        run = client.get_workflow_handle(runs[0].action.workflow_id, result_type=SessionResult)
        result = await run.result()
    assert result.last_turn is not None and result.last_turn.message is not None
    assert result.last_turn.message.content == "echo: Daily report"

    await sync_schedules(client, _formation(), settings)
    described = [s.id async for s in await client.list_schedules()]
    assert "keel/sched-test/daily" not in described
