"""A worker whose tool activity is slow, so a test can kill it mid-tool-call.

Run as `python -m tests.crash.slow_tool_worker ATTEMPTS_FILE` with the `KEEL_*`
env of `keel worker`. It runs the real workflow and LLM activity; only the
tool activity (same name, same input and result) is a stand-in that heartbeats
for `[[seconds]]` from its `seconds` argument and appends
`<idempotency key> <attempt>` to ATTEMPTS_FILE each time it starts.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio import activity
from temporalio.worker import Worker

from activities import LlmActivities
from activities._heartbeat import with_heartbeat
from activities.tools import CALL_TOOL, CallToolInput, CallToolResult
from keel.cli._serve import connect_with_retry
from keel.formation import load_formation
from keel.logging import configure_logging, get_logger
from keel.settings import Settings
from keel.store import open_store
from workflows import SessionWorkflow

log = get_logger("slow_tool_worker")


def slow_tool(attempts: Path) -> Callable[[CallToolInput], Awaitable[CallToolResult]]:
    """The stand-in tool activity, recording its attempts in `attempts`."""

    @activity.defn(name=CALL_TOOL)
    async def call_tool(input: CallToolInput) -> CallToolResult:
        with attempts.open("a") as out:
            out.write(f"{input.idempotency_key} {activity.info().attempt}\n")
        await with_heartbeat(asyncio.sleep(float(input.arguments.get("seconds", 0))), every_s=1)
        return CallToolResult(content=f"{input.name} done")

    return call_tool


async def main(attempts: Path) -> None:
    """Poll the sessions and activities queues until killed."""
    settings = Settings()
    configure_logging(level="info", fmt="json")
    formation = load_formation(settings.formation)
    client = await connect_with_retry(settings)
    store = open_store(formation.memory.store, data_dir=settings.resolved_data_dir)
    workers = [
        Worker(client, task_queue=settings.sessions_task_queue, workflows=[SessionWorkflow]),
        Worker(
            client,
            task_queue=settings.activities_task_queue,
            activities=[LlmActivities(store).call_model, slow_tool(attempts)],
        ),
    ]
    log.info("worker polling")
    await asyncio.gather(*(w.run() for w in workers))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
