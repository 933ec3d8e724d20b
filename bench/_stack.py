"""The benchmark's processes: a tuned dev server, the fake model, Keel's worker, API, floor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from temporalio.client import Client

from keel.cli._serve import connect_with_retry
from keel.devserver import dev_server_args
from keel.settings import Settings
from tests.procs import free_port

FLOOR_QUEUE = "bench-floor"


@dataclass
class Stack:
    """What a benchmark talks to."""

    api_url: str
    client: Client
    """A client with Keel's data converter (it also serves the floor)."""
    worker: subprocess.Popen[bytes]
    """Keel's worker, whose memory is measured."""
    processes: dict[str, subprocess.Popen[bytes]]
    """Every process by name (temporal, fake-llm, worker, api, floor), whose CPU is measured."""


def _formation(llm_url: str) -> dict[str, object]:
    return {
        "id": "bench",
        "models": {
            "default": {
                "provider": "openai",
                "model": "fake",
                "base_url": llm_url,
                "api_key_env": "BENCH_FAKE_KEY",
            }
        },
        "agents": [{"name": "assistant", "tools": ["lookup"]}],
        "python_tools": ["bench.tools"],
    }


@contextlib.asynccontextmanager
async def running_stack(workdir: Path, *, profile: Path | None = None) -> AsyncIterator[Stack]:
    """Start everything in `workdir`; stop it all on exit.

    With `profile`, the worker runs under cProfile and writes its stats there when stopped.
    """
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(
        name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (workdir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**_deployed_env(), **(env or {})}
            )
        processes[name] = process
        return process

    try:
        temporal_port = free_port()
        temporal = f"127.0.0.1:{temporal_port}"
        spawn("temporal", dev_server_args(db_file=None, port=temporal_port, ui_port=None))
        port_file = workdir / "llm.port"
        spawn("fake-llm", [sys.executable, "-m", "bench.fake_llm", str(port_file)])
        llm_url = f"http://127.0.0.1:{await _read_port(port_file)}/v1"
        client = await connect_with_retry(Settings(temporal_address=temporal))

        formation = workdir / "formation.yaml"
        formation.write_text(yaml.safe_dump(_formation(llm_url)))
        env = {
            "KEEL_TEMPORAL_ADDRESS": temporal,
            "KEEL_DATA_DIR": str(workdir / "data"),
            "KEEL_FORMATION": str(formation),
            "KEEL_LOG_FORMAT": "json",
            "BENCH_FAKE_KEY": "k",
        }
        python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
        worker = spawn("worker", [*python, "-m", "keel.cli", "worker"], env)
        api_port = free_port()
        spawn("api", [sys.executable, "-m", "keel.cli", "api", "--port", str(api_port)], env)
        spawn("floor", [sys.executable, "-m", "bench.floor", temporal, FLOOR_QUEUE, llm_url])
        api_url = f"http://127.0.0.1:{api_port}"
        await _healthy(f"{api_url}/health", [*processes.values()], workdir)
        yield Stack(api_url, client, worker, processes)
    finally:
        for process in reversed(processes.values()):
            process.terminate()
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _deployed_env() -> dict[str, str]:
    """This environment, less `PYTHONDONTWRITEBYTECODE`: an installed package has its
    bytecode, and without it the workflow sandbox compiles the workflow modules again
    for every session a worker loads (docs/performance.md)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


async def _read_port(port_file: Path, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while (port := _port_in(port_file)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the fake model did not start")
        await asyncio.sleep(0.1)
    return port


def _port_in(port_file: Path) -> int | None:
    text = port_file.read_text() if port_file.exists() else ""
    return int(text) if text else None


async def _healthy(
    url: str, processes: list[subprocess.Popen[bytes]], workdir: Path, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            dead = [p.args for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not start (exited: {dead}):\n{_tails(workdir)}")
            await asyncio.sleep(0.2)


def _tails(workdir: Path, lines: int = 15) -> str:
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted(workdir.glob("*.log"))
    )
