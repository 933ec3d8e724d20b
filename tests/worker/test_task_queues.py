"""Several workers: a model's own task queue (the GPU workers) and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from keel.formation import Formation
from keel.names import Activities
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.procs import WORKER_READY, worker_process, write_formation
from tests.runs import activities, pending_activities, session_runs, wait_for_pending
from tests.workflows.helpers import send, start_session, wait_for_turn
from worker import build_workers

SCHEDULED = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED


@contextlib.asynccontextmanager
async def cpu_workers(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[None]:
    """This process's workers on the sessions and activities queues, not the model's."""
    queues = [settings.sessions_task_queue, settings.activities_task_queue]
    async with contextlib.AsyncExitStack() as stack:
        for worker in build_workers(
            client, settings=settings, formation=formation, store=store, task_queues=queues
        ):
            await stack.enter_async_context(worker)
        yield


def _gpu_formation(tmp_path: Path) -> tuple[Path, Formation, str]:
    queue = f"llm-gpu-{uuid.uuid4().hex[:8]}"
    path, formation = write_formation(
        tmp_path,
        {
            "models": {"local": {"provider": "scripted", "task_queue": queue}},
            "agents": [{"name": "assistant", "model": "local"}],
        },
    )
    return path, formation, queue


async def test_llm_calls_of_a_model_with_a_task_queue_run_only_on_workers_polling_it(
    client: Client, settings: Settings, store: TranscriptStore, tmp_path: Path
) -> None:
    path, formation, gpu_queue = _gpu_formation(tmp_path)
    gpu = worker_process(
        tmp_path, settings, path, "--task-queue", gpu_queue, "--max-concurrent-activities", "2"
    )
    try:
        async with cpu_workers(client, settings, formation, store):
            handle = await start_session(client, settings, formation)
            turn_id = await send(handle, "hello")
            # No worker polls the model's queue yet: the call waits there, unstarted.
            await wait_for_pending(handle, Activities.CALL_MODEL, SCHEDULED)
            await asyncio.sleep(1)
            assert [p.state for p in await pending_activities(handle)] == [SCHEDULED]
            await gpu.start(ready=WORKER_READY)
            result = await wait_for_turn(handle, turn_id)
            [run] = await session_runs(client, handle)
    finally:
        gpu.stop()

    assert result.status == "completed" and result.message is not None
    assert result.message.content == "echo: hello"
    [call] = activities(run, Activities.CALL_MODEL)
    assert call.task_queue == gpu_queue
    assert call.identity.startswith(f"{gpu.pid}@"), (call.identity, gpu.pid)


async def test_a_stopping_worker_finishes_its_in_flight_llm_call(
    client: Client, settings: Settings, store: TranscriptStore, tmp_path: Path
) -> None:
    path, formation, gpu_queue = _gpu_formation(tmp_path)
    gpu = worker_process(tmp_path, settings, path, "--task-queue", gpu_queue)
    try:
        await gpu.start(ready=WORKER_READY)
        async with cpu_workers(client, settings, formation, store):
            handle = await start_session(client, settings, formation)
            # Long enough that the call is still running when SIGTERM lands, even on a
            # loaded machine where its start is noticed late.
            turn_id = await send(handle, "slow [[sleep 5]]")
            await wait_for_pending(handle, Activities.CALL_MODEL)
            stopping = time.monotonic()
            code = await gpu.terminate()
            stopped_after_s = time.monotonic() - stopping
            # The only worker on the model's queue is gone: had it dropped the
            # call, nothing would finish it (so the wait is bounded, and says why).
            try:
                result = await asyncio.wait_for(wait_for_turn(handle, turn_id), 60)
            except TimeoutError:
                pending = await pending_activities(handle)
                raise AssertionError(f"the call was dropped: {pending}\n{gpu.log()}") from None
            [run] = await session_runs(client, handle)
    finally:
        gpu.stop()

    assert code == 0, gpu.log()
    assert stopped_after_s > 1.5, "SIGTERM waited for the call to finish"
    assert result.status == "completed" and result.message is not None
    [call] = activities(run, Activities.CALL_MODEL)
    assert (call.outcome, call.attempt) == ("completed", 1)
    assert call.identity.startswith(f"{gpu.pid}@")
    assert [m.role for m in await store.messages(handle.id)] == ["user", "assistant"]
