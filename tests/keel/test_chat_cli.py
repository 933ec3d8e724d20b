"""`keel chat`: streams answers, shows tools and approvals, resumes sessions."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from keel.cli._chat import ChatClient, run_chat
from keel.deltas import InProcessDeltaBus
from keel.formation import Formation
from keel.settings import Settings
from keel.sse import SseEvent
from keel.store import TranscriptStore
from tests.api.live import LiveApi, live_api

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def live(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[LiveApi]:
    model = formation.models["default"].model_copy(update={"provider": "scripted"})
    scripted = formation.model_copy(update={"models": {**formation.models, "default": model}})
    async with live_api(client, settings, scripted, store, deltas=InProcessDeltaBus()) as api:
        yield api


async def _chat(api: LiveApi, typed: str, **options: str) -> tuple[int, str]:
    """Run the client in a thread (it blocks) against the API on this loop."""
    out = io.StringIO()
    code = await asyncio.to_thread(
        run_chat, str(api.http.base_url), stdin=io.StringIO(typed), stdout=out, **options
    )
    return code, out.getvalue()


async def test_it_streams_the_answer_and_shows_tool_calls(live: LiveApi) -> None:
    code, out = await _chat(live, 'hello\ncheck [[call lookup {"q": 1}]] [[say all good]]\n/quit\n')
    assert code == 0
    assert out.startswith("session ") and "with assistant" in out
    assert "assistant> echo: hello\n" in out
    # (A terminal echoes what the user types; the prompts here run together.)
    assert (
        '  -> lookup({"q": 1})\n'
        "  !! lookup: tool 'lookup' is not available to agent 'assistant'\n"
        "assistant> all good\n"
    ) in out
    assert out.count("all good") == 1


async def test_it_resumes_a_session_with_its_last_messages(live: LiveApi) -> None:
    _, out = await _chat(live, "first words\n")
    session_id = out.split()[1]
    code, resumed = await _chat(live, "second words\n", session_id=session_id)
    assert code == 0
    assert resumed.startswith(f"resuming session {session_id}")
    assert "you> first words\nassistant> echo: first words\n" in resumed
    assert "assistant> echo: second words\n" in resumed


async def test_an_unknown_session_or_agent_fails_clearly(live: LiveApi) -> None:
    code, out = await _chat(live, "", session_id="nope")
    assert code == 1 and "error 404" in out
    code, out = await _chat(live, "", agent="nobody")
    assert code == 1 and "no agent named 'nobody'" in out


async def test_the_command_line_runs_it(live: LiveApi) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keel.cli",
        "chat",
        "--url",
        str(live.http.base_url),
        "--user",
        "ann",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KEEL_LOG_LEVEL": "info"},
    )
    out, err = await asyncio.wait_for(process.communicate(b"from a terminal\n"), 30)
    assert process.returncode == 0
    assert "assistant> echo: from a terminal\n" in out.decode()
    # httpx logs every request at INFO: none of it may interleave with the conversation.
    assert "HTTP Request:" not in out.decode() + err.decode()


def _event(kind: str, **data: object) -> SseEvent:
    return SseEvent(kind, json.dumps({"type": kind, **data}))


def test_it_asks_for_an_approval_and_posts_the_decision() -> None:
    posted: list[tuple[str, dict[str, object]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posted.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    out = io.StringIO()
    http = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://keel")
    chat = ChatClient(http, io.StringIO('x\nv\n{"amount": 5}\ntoo much\n'), out)
    chat.session_id = "s1"
    chat.handle(_event("turn.started"))
    chat.handle(
        _event(
            "approval.requested",
            approval_id="ap1",
            call_id="call_1",
            tool="refund",
            arguments={"amount": 50},
        )
    )
    chat.handle(_event("approval.decided", decision="revise"))
    assert posted == [
        (
            "/v1/sessions/s1/approvals/ap1",
            {"decision": "revise", "arguments": {"amount": 5}, "feedback": "too much"},
        )
    ]
    assert '? refund({"amount": 50}) needs approval' in out.getvalue()
    assert "approval revise" in out.getvalue()


def test_a_retried_model_call_replaces_its_partial_text() -> None:
    out = io.StringIO()
    chat = ChatClient(httpx.Client(base_url="http://keel"), io.StringIO(), out)
    chat.handle(_event("turn.started"))
    for text, attempt in [("Hel", 1), ("lo", 1), ("Hello", 2), ("stale", 1), (" there", 2)]:
        chat.handle(_event("message.delta", text=text, step=1, attempt=attempt, index=0))
    chat.handle(_event("message.completed", seq=1, role="assistant", content="Hello there"))
    assert out.getvalue() == "assistant> Hello\n[retrying]\nassistant> Hello there\n"


def test_without_deltas_the_answer_shows_whole() -> None:
    out = io.StringIO()
    chat = ChatClient(httpx.Client(base_url="http://keel"), io.StringIO(), out)
    for event in (
        _event("turn.started"),
        _event("message.completed", seq=1, role="assistant", content="all at once"),
        _event("turn.completed"),
    ):
        chat.handle(event)
    assert out.getvalue() == "assistant> all at once\n"
