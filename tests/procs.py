"""Real `keel` processes for tests that kill or stop them, on the test's own queues."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from keel.devserver import dev_server_args
from keel.formation import Formation, formation_from_data
from keel.settings import Settings

KEEL = [sys.executable, "-m", "keel.cli"]
WORKER_READY = "worker polling"
"""What `keel worker` logs once its workers run."""


def write_formation(directory: Path, data: dict[str, Any]) -> tuple[Path, Formation]:
    """A formation file for a child process, and the same formation loaded here."""
    path = directory / "formation.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, formation_from_data(data, env={})


class KeelProcess:
    """A Keel child process (`keel worker`, `keel api`, ...), its output in a log file.

    Args:
        argv: the command line.
        settings: the test's settings (Temporal address, data dir, queues if set), passed as env.
        formation: the formation file the process loads.
        log: where its stdout and stderr go.
    """

    def __init__(self, argv: list[str], *, settings: Settings, formation: Path, log: Path):
        self._args = argv
        self._log = log
        queues = {
            "KEEL_SESSIONS_TASK_QUEUE": settings.sessions_task_queue,
            "KEEL_ACTIVITIES_TASK_QUEUE": settings.activities_task_queue,
        }
        self.env = {
            **os.environ,
            "KEEL_TEMPORAL_ADDRESS": settings.temporal_address,
            "KEEL_DATA_DIR": str(settings.resolved_data_dir),
            # Unset, the process derives them from the formation's id.
            **{name: queue for name, queue in queues.items() if queue},
            "KEEL_FORMATION": str(formation),
            "KEEL_LOG_FORMAT": "json",
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (its workers' Temporal identity starts with it)."""
        assert self._process is not None, "start() first"
        return self._process.pid

    async def start(self, *, ready: str, timeout_s: float = 60) -> KeelProcess:
        """Start the process and wait until `ready` is in its log, or answers 200 if a URL."""
        self._spawn()
        if ready.startswith("http"):
            await self._wait_for_http(ready, timeout_s=timeout_s)
        else:
            await self.wait_for_log(ready, timeout_s=timeout_s)
        return self

    def _spawn(self) -> None:
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(
                self._args, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    async def wait_for_log(self, text: str, *, timeout_s: float = 60) -> None:
        """Wait until `text` appears in the log; fail if the process dies first."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self._process is not None and self._process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()}"
            await asyncio.sleep(0.1)

    async def _wait_for_http(self, url: str, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                assert self._process is not None and self._process.poll() is None, self.log()
                assert time.monotonic() < deadline, f"{url} did not answer:\n{self.log()}"
                await asyncio.sleep(0.2)

    def log(self) -> str:
        """Everything the process has written."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    async def terminate(self, *, timeout_s: float = 60) -> int:
        """SIGTERM, as an orchestrator stops a pod; the exit code once it has stopped."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self._process.wait, timeout_s)

    def stop(self) -> None:
        """Make sure the process is gone (for `finally` blocks)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def worker_process(tmp_path: Path, settings: Settings, formation: Path, *args: str) -> KeelProcess:
    """A `keel worker` (by default on all of the test's queues); `args` are its flags."""
    return keel_process(tmp_path, settings, formation, [*KEEL, "worker", *args], name="worker")


def keel_process(
    tmp_path: Path, settings: Settings, formation: Path, argv: list[str], *, name: str
) -> KeelProcess:
    """A process running `argv`, logging to `tmp_path/<name>-<random>.log`."""
    log = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
    return KeelProcess(argv, settings=settings, formation=formation, log=log)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServerProcess:
    """A dev server of one test or bench alone, its data in one SQLite file: it survives SIGKILL.

    Args:
        directory: holds the database and `temporal.log` (every start appends to it).
        port: its gRPC port; a free one when None.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._args = dev_server_args(
            db_file=directory / "temporal.db", port=self.port, ui_port=None
        )
        self._log = directory / "temporal.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(self._args, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
