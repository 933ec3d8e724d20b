"""No secret reaches workflow history, step events, logs or API answers, errors included."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from api import create_app
from keel.events import EVENTS_TOPIC, SessionEvent
from keel.formation import Formation, parse_formation
from keel.logging import configure_logging
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer

PROVIDER_KEY = f"sk-provider-{uuid.uuid4().hex}"
MCP_TOKEN = f"mcp-token-{uuid.uuid4().hex}"
ADMIN_KEY = f"keel_admin_{uuid.uuid4().hex}"
SECRETS = (PROVIDER_KEY, MCP_TOKEN, ADMIN_KEY)

FORMATION = """
models:
  default:
    provider: openai
    model: fake-model
    base_url: {base_url}
    api_key_env: KEEL_TEST_PROVIDER_KEY
    max_attempts: 2
agents:
  - name: assistant
    model: default
    tools: [docs.search, lookup]
python_tools: [tests.fakes.tools]
mcp_servers:
  - name: docs
    transport: http
    url: http://127.0.0.1:9/mcp
    headers: {{Authorization: "Bearer ${{KEEL_TEST_MCP_TOKEN}}"}}
"""


def history_text(history: WorkflowHistory) -> str:
    """The history as JSON, followed by every payload in it decoded (JSON keeps them base64)."""
    decoded: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "encoding" in node.get("metadata", {}):
                decoded.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    as_json = history.to_json_dict()
    walk(as_json)
    return json.dumps(as_json) + "\n" + "\n".join(decoded)


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Every log line of the test, at debug level, as the CLI would write them (JSON)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    captured = io.StringIO()
    stderr, sys.stderr = sys.stderr, captured
    try:
        configure_logging(level="debug", fmt="json")
    finally:
        sys.stderr = stderr
    yield captured
    root.handlers[:], level, config = saved
    root.setLevel(level)
    structlog.configure(**config)


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


async def test_no_secret_in_history_events_logs_or_answers(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    llm: FakeLLMServer,
    all_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KEEL_TEST_PROVIDER_KEY", PROVIDER_KEY)
    monkeypatch.setenv("KEEL_TEST_MCP_TOKEN", MCP_TOKEN)
    formation: Formation = parse_formation(FORMATION.format(base_url=llm.openai_base_url))
    settings = settings.model_copy(update={"admin_keys": ADMIN_KEY})
    app = create_app(settings, formation, client=client, store=store)
    answers: list[str] = []
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://keel",
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-User-Id": "ann"},
        ) as api,
    ):

        async def chat(message: str, session_id: str | None = None) -> dict[str, str]:
            response = await api.post(
                "/v1/chat", json={"message": message, "session_id": session_id}
            )
            answers.append(response.text)
            assert response.status_code == 200, response.text
            body: dict[str, str] = response.json()
            return body

        llm.enqueue_reply("hello there")
        session_id = (await chat("hi"))["session_id"]
        # A tool call, its (failing) tool activity, and the answer after it.
        llm.enqueue_reply("", tool_calls=[{"name": "lookup", "arguments": {"invoice": 7}}])
        llm.enqueue_reply("done")
        assert (await chat("look it up", session_id))["status"] == "completed"
        # A vendor that quotes the key back: first retryable, then final.
        llm.enqueue_error(500, f"upstream trouble with key {PROVIDER_KEY}")
        llm.enqueue_error(401, f"Incorrect API key provided: {PROVIDER_KEY}")
        failed = await chat("and now?", session_id)
        assert failed["status"] == "failed" and "401" in failed["error"]

        for path in (f"/v1/sessions/{session_id}", "/health", "/v1/sessions", "/v1/agents"):
            answers.append((await api.get(path)).text)
        refused = await api.get("/v1/sessions", headers={"Authorization": f"Bearer {ADMIN_KEY}x"})
        assert refused.status_code == 401
        answers.append(refused.text)

        workflow_id = f"keel/default/{session_id}"
        events: list[SessionEvent] = []
        stream = WorkflowStreamClient.create(client, workflow_id)
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            events.append(item.data)
            if item.data.type == "turn.failed":
                break
        history = history_text(await client.get_workflow_handle(workflow_id).fetch_history())

    assert {"tool.call", "tool.result", "turn.failed"} <= {e.type for e in events}
    logs = all_logs.getvalue()
    assert '"event": "model answered"' in logs  # the capture works
    assert '"key": "admin-' in logs  # request lines name the key, never quote it
    places = {
        "history": history,
        "events": "\n".join(e.model_dump_json() for e in events),
        "logs": logs,
        "answers": "\n".join(answers),
    }
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret is in the {where}"
    # The configuration names its variables (and the payloads were decoded).
    assert "KEEL_TEST_PROVIDER_KEY" in history
