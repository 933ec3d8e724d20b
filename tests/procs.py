"""Real `keel` processes for tests that kill or stop them, on the test's own queues."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

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
    """A `keel worker` or `keel api` child process, its output in a log file.

    Args:
        args: the command after `keel`, e.g. `["worker", "--task-queue", "q"]`.
        settings: the test's settings (Temporal address, data dir, queues), passed as env.
        formation: the formation file the process loads.
        log: where its stdout and stderr go.
    """

    def __init__(self, args: list[str], *, settings: Settings, formation: Path, log: Path):
        self._args = [*KEEL, *args]
        self._log = log
        self.env = {
            **os.environ,
            "KEEL_TEMPORAL_ADDRESS": settings.temporal_address,
            "KEEL_DATA_DIR": str(settings.resolved_data_dir),
            "KEEL_SESSIONS_TASK_QUEUE": settings.sessions_task_queue,
            "KEEL_ACTIVITIES_TASK_QUEUE": settings.activities_task_queue,
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
        """Start the process and wait until its log shows `ready`."""
        self._spawn()
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
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    return KeelProcess(["worker", *args], settings=settings, formation=formation, log=log)
