"""Recall latency of vector memory in embedded (local) Qdrant mode, at growing sizes.

Run: `python bench/recall.py [--sizes 1000 10000 100000] [--users 100] [--disk-max 10000]`.
Prints a Markdown table (docs/memory.md quotes one). Each size gets a fresh store
in a temporary directory; memories spread evenly over `--users` users, so a
recall filters down to one user's share, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

from qdrant_client import AsyncQdrantClient

from keel.formation import VectorMemoryConfig
from keel.memory import MemoryScope, NewMemory, VectorMemory, memory_id

TOPICS = ["colour", "food", "car", "family", "work", "travel", "music", "sport", "pets", "books"]
BATCH = 1000


def _text(i: int) -> str:
    return f"User {i} said something about {TOPICS[i % len(TOPICS)]} number {i // len(TOPICS)}."


async def _fill(memory: VectorMemory, size: int, users: int) -> float:
    started = time.perf_counter()
    for start in range(0, size, BATCH):
        by_user: dict[int, list[NewMemory]] = {}
        for i in range(start, min(size, start + BATCH)):
            by_user.setdefault(i % users, []).append(_memory(i))
        for user, memories in by_user.items():
            await memory.write(_scope(user), memories)
    return time.perf_counter() - started


def _memory(i: int) -> NewMemory:
    return NewMemory(
        id=memory_id("bench", str(i), 0),
        kind="exchange",
        text=_text(i),
        session=f"keel/bench/s{i % 300}",
        turn_id=str(i),
    )


def _scope(user: int) -> MemoryScope:
    return MemoryScope(tenant="bench", user_id=f"user{user}", formation="bench")


async def _measure(size: int, users: int, queries: int, disk: bool) -> dict[str, float]:
    config = VectorMemoryConfig(enabled=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Local mode searches in memory either way; on disk it also logs every point to
        # SQLite (one commit each) and reads it all back when opened.
        client = AsyncQdrantClient(path=tmp) if disk else AsyncQdrantClient(location=":memory:")
        memory = VectorMemory(client, config=config)
        await memory.embed(["warm up"])
        fill_s = await _fill(memory, size, users)
        open_s = float("nan")
        if disk:
            await memory.close()
            started = time.perf_counter()
            memory = VectorMemory(AsyncQdrantClient(path=tmp), config=config)
            await memory.recall(_scope(0), "warm up", top_k=5)
            open_s = time.perf_counter() - started

        recalls, writes = [], []
        for q in range(queries):
            scope = _scope(q % users)
            started = time.perf_counter()
            found = await memory.recall(scope, f"what about {TOPICS[q % 10]}?", top_k=5)
            recalls.append((time.perf_counter() - started) * 1000)
            assert found, "a user with memories recalled nothing"
            started = time.perf_counter()
            await memory.write(scope, [_memory(size + q)])
            writes.append((time.perf_counter() - started) * 1000)
        await memory.close()
    return {
        "size": size,
        "fill_s": fill_s,
        "open_s": open_s,
        "recall_p50": statistics.median(recalls),
        "recall_p95": _p95(recalls),
        "write_p50": statistics.median(writes),
    }


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument(
        "--disk-max", type=int, default=10_000, help="largest size also measured on disk"
    )
    args = parser.parse_args()
    lines = [
        "| memories | storage | fill (s) | open (s) | recall p50 (ms) | recall p95 (ms)"
        " | write p50 (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in args.sizes:
        for disk in (False, True) if size <= args.disk_max else (False,):
            r = await _measure(size, args.users, args.queries, disk)
            lines.append(
                f"| {size:,} | {'disk' if disk else 'memory'} | {r['fill_s']:.1f} |"
                f" {r['open_s']:.2f} | {r['recall_p50']:.1f} | {r['recall_p95']:.1f} |"
                f" {r['write_p50']:.1f} |"
            )
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
