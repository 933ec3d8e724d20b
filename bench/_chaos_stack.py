"""The chaos harness's processes: a dev server on a SQLite file, `keel worker`, `keel api`.

Each can be SIGKILLed and started again in place: the dev server on the same
port and database file (so every workflow survives it), the API on the same
port (so clients keep their URL), the worker as a new process on the same
queues. Each worker and API start logs to a file of its own in the work directory; the
dev server's starts append to `temporal.log`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from temporalio.client import Client

from keel.cli._serve import connect_with_retry
from keel.settings import Settings
from tests.procs import (
    KEEL,
    WORKER_READY,
    DevServerProcess,
    KeelProcess,
    free_port,
    keel_process,
    write_formation,
)

Target = Literal["worker", "api", "server"]
"""What the chaos loop kills."""

FORMATION = {
    "id": "chaos",
    # In the worker, no network: "echo: <message>", so each answer names its turn.
    "models": {"default": {"provider": "scripted"}},
    "agents": [{"name": "assistant"}],
}


@dataclass
class Downtime:
    """One kill: what, and how long until it served again."""

    target: Target
    down_s: float
    """From the SIGKILL until the restarted process was ready."""
    in_flight: int = 0
    """Turns sent and not yet answered when it was killed."""


class ChaosStack:
    """The processes under test, each killable and restartable; `stop()` ends them all.

    Args:
        workdir: holds the formation, the data dir (transcript store), the dev
            server's database and every process's log.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        suffix = f"{int(time.time())}"
        temporal_port, api_port = free_port(), free_port()
        self.settings = Settings(
            data_dir=workdir / "data",
            temporal_address=f"127.0.0.1:{temporal_port}",
            sessions_task_queue=f"chaos-sessions-{suffix}",
            activities_task_queue=f"chaos-activities-{suffix}",
        )
        self.api_url = f"http://127.0.0.1:{api_port}"
        self._api_port = api_port
        self._formation, _ = write_formation(workdir, FORMATION)
        self._server = DevServerProcess(workdir, temporal_port)
        self._worker: KeelProcess | None = None
        self._api: KeelProcess | None = None
        self.client: Client | None = None
        """A client of the dev server, for reading histories (reconnects after a restart)."""

    async def start(self) -> None:
        """Start the dev server, then a worker and the API; return once all three serve."""
        self._server.start()
        self.client = await connect_with_retry(self.settings)
        await asyncio.gather(self._start_worker(), self._start_api())

    async def kill(self, target: Target, *, in_flight: int = 0) -> Downtime:
        """SIGKILL `target`, start it again, and wait until it serves.

        `in_flight` (the turns under way at the kill) is kept with the downtime.
        """
        killed = time.monotonic()
        if target == "worker":
            assert self._worker is not None
            self._worker.kill()
            await self._start_worker()
        elif target == "api":
            assert self._api is not None
            self._api.kill()
            await self._start_api()
        else:
            self._server.kill()
            self._server.start()
            await connect_with_retry(self.settings)
        return Downtime(target, round(time.monotonic() - killed, 3), in_flight)

    def stop(self) -> None:
        """Kill whatever still runs (nothing here needs a clean shutdown)."""
        for process in (self._api, self._worker):
            if process is not None:
                process.stop()
        self._server.kill()

    def logs(self, lines: int = 20) -> str:
        """The last lines of every log, to explain a failure."""
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for log in sorted(self.workdir.glob("*.log"))
        )

    async def _start_worker(self) -> None:
        worker = keel_process(
            self.workdir, self.settings, self._formation, [*KEEL, "worker"], name="worker"
        )
        self._worker = worker
        await worker.start(ready=WORKER_READY, timeout_s=120)

    async def _start_api(self) -> None:
        argv = [*KEEL, "api", "--port", str(self._api_port)]
        api = keel_process(self.workdir, self.settings, self._formation, argv, name="api")
        self._api = api
        await api.start(ready=f"{self.api_url}/health", timeout_s=120)
