"""Token streaming latency: from a model's token to an SSE client of the Keel API.

What it measures
    For every token a (fake) OpenAI-compatible model emits, the time until the
    `message.delta` carrying it reaches a client reading `POST /v1/chat` with
    `stream: true`. The model stamps each token with the wall clock when it
    sends it (`t<unix ns>`), so the client measures across processes on one
    machine. Reported: p50/p95 of the first token of each turn, of every token,
    and of the lag from a turn's last token to its durable `message.completed`
    (which travels through Workflow Streams, for comparison).

    The API sends a delta only after the step events that precede its model
    call (`turn.started` for a turn's first call). With a model that answers
    at once (`--first-token-ms 0`, the default and the worst case) the first
    token's figure therefore includes `turn.started`'s trip through Workflow
    Streams; a real model's time to first token usually hides it.

Set-ups
    redis       `keel worker` and `keel api` as separate processes against a
                Temporal dev server, with deltas over Redis (KEEL_REDIS_URL).
    in-process  `keel dev` (one process: worker and API share an in-process bus).

Each set-up runs alone (one session, turn after turn) and loaded (N sessions
streaming at once), in the same run, so the figures compare. A turn starts as
soon as the previous one ends, so step events are always flowing.

Usage (from the repository root, Keel installed or on PYTHONPATH, and Redis on
127.0.0.1:6379 for `redis`)::

    PYTHONPATH=. python bench/streaming.py          # both set-ups, 20 sessions
    PYTHONPATH=. python bench/streaming.py --setup redis --sessions 20 --turns 3

It prints a Markdown table (docs/performance.md, "Streaming", holds one).

Not part of CI: it takes a minute or two and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from keel.devserver import DevServer
from keel.sse import aiter_sse

ROOT = Path(__file__).resolve().parent.parent
KEEL = [sys.executable, "-m", "keel.cli"]
FORMATION = """\
id: bench
models:
  default: {{provider: openai, model: bench, base_url: "http://127.0.0.1:{port}/v1",
            api_key_env: KEEL_BENCH_KEY}}
agents:
  - {{name: assistant, model: default}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the fake model (its own process) -----------------------------------------


def serve_fake_model(port: int, tokens: int, interval_s: float, first_s: float) -> None:
    """An OpenAI chat-completions endpoint that streams `tokens` time-stamped tokens.

    The first comes `first_s` after the request (the model's time to first token).
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chunks() -> AsyncIterator[str]:
        head = {"id": "b", "object": "chat.completion.chunk", "created": 0, "model": "bench"}

        def chunk(delta: dict[str, object], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for i in range(tokens):
            await asyncio.sleep(interval_s if i else first_s)
            yield chunk({"content": f"t{time.time_ns()} "})
        yield chunk({}, "stop")
        usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    async def complete(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- measuring -----------------------------------------------------------------


@dataclass
class Samples:
    """Latencies in milliseconds."""

    first: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    completed: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def stream_turn(http: httpx.AsyncClient, session_id: str, samples: Samples | None) -> None:
    """One streamed turn; records latencies into `samples` (None: warm-up)."""
    body = {"message": "go", "session_id": session_id, "stream": True}
    first, last_sent = True, 0
    async with http.stream("POST", "/v1/chat", json=body) as response:
        response.raise_for_status()
        async for event in aiter_sse(response.aiter_lines()):
            now = time.time_ns()
            if event.event == "message.delta":
                for token in event.json()["text"].split():
                    sent = int(token[1:])
                    last_sent = max(last_sent, sent)
                    if samples is not None:
                        samples.tokens.append((now - sent) / 1e6)
                        if first:
                            samples.first.append((now - sent) / 1e6)
                    first = False
            elif event.event == "message.completed" and samples is not None and last_sent:
                samples.completed.append((now - last_sent) / 1e6)
            elif event.event == "turn.failed":
                raise RuntimeError(event.data)


async def measure(url: str, sessions: int, turns: int) -> Samples:
    """`sessions` sessions streaming `turns` turns each, all at once, after a warm-up turn."""
    samples = Samples()
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, read=None)) as http:
        ids = [(await http.post("/v1/sessions", json={})).json()["id"] for _ in range(sessions)]
        await asyncio.gather(*(stream_turn(http, s, None) for s in ids))

        async def run(session_id: str) -> None:
            for _ in range(turns):
                await stream_turn(http, session_id, samples)

        await asyncio.gather(*(run(s) for s in ids))
    return samples


# -- the set-ups -----------------------------------------------------------------


async def wait_healthy(url: str, processes: list[asyncio.subprocess.Process]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(600):
            for process in processes:
                if process.returncode is not None:
                    raise RuntimeError(f"a keel process exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                health = (await http.get(f"{url}/health")).json()
                queues = health.get("temporal", {}).get("task_queues", {})
                if health["status"] == "ok" and all(q["pollers"] for q in queues.values()):
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become healthy")


async def spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *KEEL, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )


@contextlib.asynccontextmanager
async def keel_setup(setup: str, data: Path, formation: Path, redis_url: str) -> AsyncIterator[str]:
    """Start a set-up; yields the API's URL."""
    port = free_port()
    env = {**os.environ, "KEEL_BENCH_KEY": "k", "KEEL_LOG_LEVEL": "warning"}
    env["KEEL_DATA_DIR"] = str(data)
    env.pop("KEEL_REDIS_URL", None)
    server: DevServer | None = None
    processes: list[asyncio.subprocess.Process] = []
    try:
        if setup == "in-process":
            processes.append(
                await spawn(
                    "dev",
                    "--port",
                    str(port),
                    "--temporal-port",
                    str(free_port()),
                    "--ui-port",
                    str(free_port()),
                    "--formation",
                    str(formation),
                    env=env,
                )
            )
        else:
            temporal = free_port()
            server = DevServer(data, port=temporal, ui_port=None)
            server.start()
            env |= {"KEEL_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}", "KEEL_REDIS_URL": redis_url}
            processes.append(await spawn("worker", "--formation", str(formation), env=env))
            api = ["api", "--port", str(port), "--formation", str(formation)]
            processes.append(await spawn(*api, env=env))
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, processes)
        yield url
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            await process.wait()
        if server is not None:
            server.stop()


def row(setup: str, sessions: int, samples: Samples) -> str:
    cells = [
        f"{pct(values, 0.5):.1f} / {pct(values, 0.95):.1f}"
        for values in (samples.first, samples.tokens, samples.completed)
    ]
    return f"| {setup} | {sessions} | {len(samples.first)} | " + " | ".join(cells) + " |"


async def main(args: argparse.Namespace) -> None:
    model_port = free_port()
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-fake-model",
        str(model_port),
        "--tokens",
        str(args.tokens),
        "--token-interval-ms",
        str(args.token_interval_ms),
        "--first-token-ms",
        str(args.first_token_ms),
    )
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
            formation = Path(tmp) / "formation.yaml"
            formation.write_text(FORMATION.format(port=model_port))
            for setup in args.setup:
                data = Path(tmp) / setup
                data.mkdir()
                async with keel_setup(setup, data, formation, args.redis_url) as url:
                    for sessions, turns in ((1, args.alone_turns), (args.sessions, args.turns)):
                        samples = await measure(url, sessions, turns)
                        rows.append(row(setup, sessions, samples))
                        sys.stderr.write(rows[-1] + "\n")
    finally:
        fake.terminate()
        await fake.wait()
    load = os.getloadavg()
    lines = [
        f"{args.tokens} tokens per turn, the first after {args.first_token_ms:g} ms, then"
        f" {args.token_interval_ms:g} ms apart; {args.alone_turns}"
        f" turns alone, {args.turns} per session loaded; Python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end",
        "",
        "| set-up | sessions | turns | first token p50 / p95 (ms) | every token p50 / p95 (ms)"
        " | last token → message.completed p50 / p95 (ms) |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--setup", nargs="+", choices=["redis", "in-process"], default=["redis", "in-process"]
    )
    parser.add_argument("--sessions", type=int, default=20, help="sessions in the loaded round")
    parser.add_argument("--turns", type=int, default=3, help="measured turns per loaded session")
    parser.add_argument("--alone-turns", type=int, default=15, help="measured turns alone")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--token-interval-ms", type=float, default=20.0)
    parser.add_argument(
        "--first-token-ms",
        type=float,
        default=0.0,
        help="the model's time to first token (0: at once, the worst case for the first delta)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--serve-fake-model", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_fake_model:
        serve_fake_model(
            arguments.serve_fake_model,
            arguments.tokens,
            arguments.token_interval_ms / 1000,
            arguments.first_token_ms / 1000,
        )
    else:
        asyncio.run(main(arguments))
