"""The `keel` command as a user runs it: a real process, real ports, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from keel.cli._serve import NO_REDIS_WARNING
from keel.settings import Settings
from tests.procs import KEEL, WORKER_READY, free_port, keel_process, write_formation

ROOT = Path(__file__).resolve().parents[2]


def test_validate_accepts_the_example_and_names_the_field_of_a_bad_file(tmp_path: Path) -> None:
    # From the repository root, as the docs say; its Python tools import and resolve.
    ok = subprocess.run(
        [*KEEL, "validate", "examples/formation.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout and "2 Python tools" in ok.stdout

    bad = tmp_path / "formation.yaml"
    bad.write_text(
        "models: {default: {provider: echo}}\nagents:\n  - name: a\n    max_steps: lots\n"
    )
    failed = subprocess.run([*KEEL, "validate", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "agents[0] (a).max_steps" in failed.stderr


def test_a_bad_formation_stops_the_process_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "formation.yaml"
    bad.write_text("agents: []\n")
    failed = subprocess.run(
        [*KEEL, "worker", "--formation", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert failed.returncode == 2 and "agents" in failed.stderr


def test_a_versioned_worker_needs_both_its_deployment_and_its_build_id() -> None:
    failed = subprocess.run(
        [*KEEL, "worker", "--deployment", "keel"], capture_output=True, text=True, timeout=30
    )
    assert failed.returncode == 2
    assert "needs both its deployment and its build id (--deployment and --build-id" in (
        failed.stderr
    )


def test_a_worker_refuses_tools_that_do_not_resolve(
    tmp_path: Path, temporal_env: WorkflowEnvironment
) -> None:
    # The module is found in the working directory, as `keel worker` users expect.
    (tmp_path / "mytools.py").write_text(
        "import keel\n\n@keel.tool\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    (tmp_path / "formation.yaml").write_text(
        "models: {default: {provider: echo}}\n"
        "agents: [{name: a, tools: [double, triple]}]\n"
        "python_tools: [mytools]\n"
    )
    address = temporal_env.client.service_client.config.target_host
    failed = subprocess.run(
        [*KEEL, "worker"],
        cwd=tmp_path,
        env={**os.environ, "KEEL_TEMPORAL_ADDRESS": address, "KEEL_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2, failed.stderr
    assert "keel: agents[0] (a).tools[1]: no Python tool is called 'triple'" in failed.stderr
    assert "double" not in failed.stderr.split("keel: ", 1)[1]


def test_python_tools_import_from_beside_the_formation_whatever_the_directory(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    example = subprocess.run(
        [*KEEL, "validate", str(ROOT / "examples" / "tools.yaml")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert example.returncode == 0, example.stderr
    assert "2 Python tools" in example.stdout

    # A bare tool name that no module defines is found by validate, not first by a worker.
    app = tmp_path / "app"
    (app / "shop").mkdir(parents=True)
    (app / "shop" / "__init__.py").write_text("")
    (app / "shop" / "tools.py").write_text(
        "import keel\n\n@keel.tool\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    (app / "formation.yaml").write_text(
        "models: {default: {provider: echo}}\n"
        "agents: [{name: a, tools: [double, triple]}]\n"
        "python_tools: [shop.tools]\n"
    )
    failed = subprocess.run(
        [*KEEL, "validate", "../app/formation.yaml"], cwd=elsewhere, capture_output=True, text=True
    )
    assert failed.returncode == 2, failed.stdout
    assert failed.stderr == (
        "keel: ../app/formation.yaml: agents[0] (a).tools[1]: no Python tool is called"
        " 'triple'; list its module under python_tools, or write an MCP tool as `server.tool`\n"
    )


@pytest.mark.parametrize("command", ["api", "worker"])
async def test_without_redis_api_and_worker_say_at_start_that_tokens_do_not_stream(
    tmp_path: Path, settings: Settings, command: str
) -> None:
    formation, _ = write_formation(
        tmp_path, {"models": {"default": {"provider": "echo"}}, "agents": [{"name": "a"}]}
    )
    port = free_port()
    argv = [*KEEL, command, *(["--port", str(port)] if command == "api" else [])]
    process = keel_process(tmp_path, settings, formation, argv, name=command)
    process.env.pop("KEEL_REDIS_URL", None)
    ready = f"http://127.0.0.1:{port}/health" if command == "api" else WORKER_READY
    try:
        await process.start(ready=ready)
    finally:
        process.stop()
    warnings = [line for line in process.log().splitlines() if NO_REDIS_WARNING in line]
    assert len(warnings) == 1, process.log()
    assert json.loads(warnings[0])["level"] == "warning"


async def test_with_redis_a_worker_says_nothing_of_the_kind(
    tmp_path: Path, settings: Settings
) -> None:
    formation, _ = write_formation(
        tmp_path, {"models": {"default": {"provider": "echo"}}, "agents": [{"name": "a"}]}
    )
    process = keel_process(tmp_path, settings, formation, [*KEEL, "worker"], name="worker")
    process.env["KEEL_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    try:
        await process.start(ready=WORKER_READY)
    finally:
        process.stop()
    assert NO_REDIS_WARNING not in process.log()
    assert '"channel": "redis"' in process.log()


class _Dev:
    """`keel dev` on free ports, in its own data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def args(self) -> list[str]:
        return [
            *KEEL,
            "dev",
            "--port",
            str(self.port),
            "--temporal-port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            "--data-dir",
            str(self.data_dir),
        ]

    def start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "KEEL_LOG_FORMAT": "json"}
        env.pop("OPENAI_API_KEY", None)
        process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.3)
        process.kill()
        raise AssertionError(f"keel dev did not become healthy: {process.communicate()[0]}")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[_Dev]:
    yield _Dev(tmp_path / "data")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_keel_dev_serves_chat_and_keeps_sessions_across_a_restart(dev: _Dev) -> None:
    process = dev.start()
    try:
        answer = httpx.post(f"{dev.url}/v1/chat", json={"message": "remember me"}, timeout=30)
        assert answer.status_code == 200, answer.text
        session_id = answer.json()["session_id"]
        ui = httpx.get(f"http://127.0.0.1:{dev.ui_port}/", timeout=10)
        assert ui.status_code == 200
        console = httpx.get(f"{dev.url}/console/sessions/{session_id}", timeout=10)
        assert console.status_code == 200  # the web console, on the API's origin
        assert "default-src 'self'" in console.headers["content-security-policy"]
    finally:
        output = _stop(process)
    assert dev.url in output and f"127.0.0.1:{dev.ui_port}" in output
    assert NO_REDIS_WARNING not in output  # one process: tokens stream in-process

    process = dev.start()
    try:
        session = httpx.get(f"{dev.url}/v1/sessions/{session_id}", timeout=30).json()
        assert [m["content"] for m in session["messages"]] == ["remember me", "echo: remember me"]
        again = httpx.post(
            f"{dev.url}/v1/chat",
            json={"message": "still here?", "session_id": session_id},
            timeout=30,
        )
        assert again.json()["message"]["content"] == "echo: still here?"
    finally:
        _stop(process)


def test_the_dev_banner_names_the_console(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from argparse import Namespace

    from keel.cli._dev import _banner

    _banner(settings, Namespace(host="127.0.0.1", port=8123))
    assert "  Console       http://127.0.0.1:8123/console\n" in capsys.readouterr().out
