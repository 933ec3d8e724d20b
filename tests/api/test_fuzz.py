"""Schemathesis against a real `keel dev`: every phase, every check, with keys and without.

Bad input must never reach a 500, and every answer must be one the OpenAPI document
declares. The run is bounded (tests/api/schemathesis.toml) and deterministic, so it fails
on a change to the API, not on the draw. To explore further by hand, start `keel dev` and
run `st --config-file schemathesis.toml run URL/openapi.json` from tests/api with
`--max-examples` raised and `deterministic` set to false in a copy of the config.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.procs import KEEL, free_port, write_formation

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
ST = Path(sys.executable).parent / "st"
ADMIN_KEY = f"fuzz-admin-{uuid.uuid4().hex}"
FORMATION = {
    "id": "fuzz",
    "models": {"default": {"provider": "echo"}},
    "agents": [{"name": "assistant", "model": "default"}],
    # Something for `POST /v1/triggers/{name}` and `/v1/memory` to find.
    "triggers": [{"name": "ping", "agent": "assistant", "template": "ping"}],
    "memory": {"vector": {"enabled": True}},
}
RUN_TIMEOUT_S = 150
MIN_CASES = 1000
"""Fewer means the run tested less than it should (a phase or an operation fell out)."""
pytestmark = pytest.mark.timeout(RUN_TIMEOUT_S + 60)


@dataclass
class _Dev:
    """A `keel dev` on free ports, in a data dir of its own."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start(tmp: Path, name: str, env: dict[str, str]) -> _Dev:
    port = free_port()
    formation, _ = write_formation(tmp, FORMATION)
    log = tmp / f"{name}.log"
    argv = [
        *KEEL,
        "dev",
        *("--port", str(port), "--temporal-port", str(free_port())),
        *("--ui-port", str(free_port()), "--data-dir", str(tmp / "data")),
        *("--formation", str(formation)),
    ]
    # Nothing of the caller's environment configures it: no key, no model key, no limits.
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    base.pop("OPENAI_API_KEY", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, **env, "KEEL_LOG_FORMAT": "json"},
        )
    return _Dev(f"http://127.0.0.1:{port}", process, log)


def _wait_healthy(dev: _Dev, *, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{dev.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert dev.process.poll() is None, dev.output()
        assert time.monotonic() < deadline, f"keel dev did not start:\n{dev.output()}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def devs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Dev]]:
    """Both servers, started at once (their Temporal dev servers take the time)."""
    modes: dict[str, dict[str, str]] = {
        "dev": {},
        # One admin key bound to no tenant, so `X-Tenant-Id` is honoured too; no rate or
        # session limit, so the fuzzer reaches the routes and not the buckets.
        "keys": {
            "KEEL_ADMIN_KEYS": ADMIN_KEY,
            "KEEL_RATE_LIMIT_PER_MINUTE": "0",
            "KEEL_MAX_SESSIONS_PER_USER": "0",
        },
    }
    started = {
        mode: _start(tmp_path_factory.mktemp(f"fuzz-{mode}"), mode, env)
        for mode, env in modes.items()
    }
    try:
        for dev in started.values():
            _wait_healthy(dev)
        yield started
    finally:
        for dev in started.values():
            dev.process.terminate()
        for dev in started.values():
            try:
                dev.process.wait(30)
            except subprocess.TimeoutExpired:
                dev.process.kill()
                dev.process.wait()


@pytest.mark.parametrize("mode", ["dev", "keys"])
def test_fuzzing_finds_no_server_error_and_no_undeclared_answer(
    devs: dict[str, _Dev], mode: str, tmp_path: Path
) -> None:
    dev = devs[mode]
    config = HERE / "schemathesis.toml"
    if mode == "keys":
        # The key as the document's security scheme, so that the auth checks can leave it
        # out or spoil it (a header given on the command line would be sent regardless).
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            (HERE / "schemathesis.toml").read_text()
            + f'\n[auth.openapi.HTTPBearer]\nbearer = "{ADMIN_KEY}"\n'
        )
    argv = [
        str(ST),
        *("--config-file", str(config)),
        "run",
        f"{dev.url}/openapi.json",
        *("--phases", "examples,coverage,fuzzing,stateful"),
        # Every check comes from the config (`[checks] enabled`): `--checks all` would
        # switch back on the one it turns off.
        "--no-color",
    ]
    started = time.monotonic()
    # From this folder: the config names its hooks module relative to it.
    run = subprocess.run(argv, cwd=HERE, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    took = time.monotonic() - started
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"{report}\n--- keel dev ---\n{dev.output()[-5_000:]}"
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases is not None, report
    assert int(cases[1]) == int(cases[2]) >= MIN_CASES, report
    log.info("%s: %s cases in %.0f s", mode, cases[1], took)
