"""`/mcp` with the official `mcp` SDK's client: the agents as tools, sessions, approvals, keys."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as mt
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.api.live import LiveApi
from tests.api.protocols.conftest import CLIENT, approve, auth


@contextlib.asynccontextmanager
async def mcp_client(
    live: LiveApi, headers: dict[str, str], seen: list[httpx2.Response] | None = None
) -> AsyncIterator[Client]:
    """An MCP client of the served `/mcp`, sending `headers` (the responses go to `seen`)."""

    async def note(response: httpx2.Response) -> None:
        if seen is not None:
            seen.append(response)

    url = str(live.http.base_url.join("/mcp"))
    http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [note]})
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


def _text(result: mt.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, mt.TextContent))


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_each_agent_is_an_ask_tool(live: LiveApi) -> None:
    async with mcp_client(live, auth()) as mcp:
        listed = await mcp.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"ask_assistant", "ask_billing"}
    schema = tools["ask_billing"].input_schema
    assert schema["required"] == ["message"]
    assert set(schema["properties"]) == {"message", "session_id"}
    assert tools["ask_billing"].description == "Answers billing questions"


async def test_a_call_answers_and_its_session_id_continues_the_conversation(
    live: LiveApi,
) -> None:
    async with mcp_client(live, auth()) as mcp:
        first = await mcp.call_tool("ask_billing", {"message": "my invoice is 7"})
        assert not first.is_error, _text(first)
        assert _text(first) == "echo: my invoice is 7"
        ids = first.structured_content
        assert ids is not None and ids["status"] == "completed"
        again = {"message": "and the other one?", "session_id": ids["session_id"]}
        second = await mcp.call_tool("ask_billing", again)
    assert not second.is_error, _text(second)
    assert second.structured_content is not None
    assert second.structured_content["session_id"] == ids["session_id"]
    assert second.structured_content["turn_id"] != ids["turn_id"]
    session = (await live.http.get(f"/v1/sessions/{ids['session_id']}", headers=auth())).json()
    assert session["agent"] == "billing"
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "my invoice is 7"),
        ("assistant", "echo: my invoice is 7"),
        ("user", "and the other one?"),
        ("assistant", "echo: and the other one?"),
    ]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({}, "message: Field required"),
        ({"message": ""}, "message: String should have at least 1 character"),
        ({"message": "   "}, "the message is empty"),
        ({"message": "hi", "session_id": "no-such-session"}, "no such session"),
        ({"message": "hi", "session_id": "../x"}, "session_id: String should match pattern"),
        ({"message": "hi", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
async def test_a_bad_argument_is_a_tool_error(
    live: LiveApi, arguments: dict[str, Any], says: str
) -> None:
    async with mcp_client(live, auth()) as mcp:
        result = await mcp.call_tool("ask_billing", arguments)
    assert result.is_error
    assert says in _text(result)


async def test_a_session_of_another_agent_is_a_tool_error(live: LiveApi) -> None:
    async with mcp_client(live, auth()) as mcp:
        first = await mcp.call_tool("ask_billing", {"message": "hi"})
        assert first.structured_content is not None
        session_id = first.structured_content["session_id"]
        result = await mcp.call_tool("ask_assistant", {"message": "hi", "session_id": session_id})
    assert result.is_error
    assert "talks to agent 'billing', not 'assistant'" in _text(result)


async def test_an_unknown_tool_is_a_clear_error(live: LiveApi) -> None:
    async with mcp_client(live, auth()) as mcp:
        with pytest.raises(MCPError) as raised:
            await mcp.call_tool("ask_nobody", {"message": "hi"})
    assert raised.value.code == mt.INVALID_PARAMS
    assert "no tool 'ask_nobody'; the tools are ask_assistant, ask_billing" in raised.value.message


async def test_a_gated_tool_waits_for_its_approval(live: LiveApi) -> None:
    user = _user()
    async with mcp_client(live, auth(CLIENT, user)) as mcp:
        call = asyncio.create_task(
            mcp.call_tool("ask_assistant", {"message": '[[call lookup {"invoice": 7}]]'})
        )
        approval = await _inbox_approval(live, user)
        assert not call.done()
        await approve(live.http, approval["session_id"], approval["id"])
        result = await asyncio.wait_for(call, 30)
    assert not result.is_error, _text(result)
    assert _text(result) == "tool results: lookup -> invoice 7: 40 EUR"
    assert result.structured_content is not None
    assert result.structured_content["session_id"] == approval["session_id"]


async def test_without_a_key_mcp_answers_401(live: LiveApi) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        seen: list[httpx2.Response] = []
        with pytest.raises(ExceptionGroup) as raised:
            async with mcp_client(live, headers, seen):
                pass
        assert seen and {r.status_code for r in seen} == {401}
        assert all(r.headers["www-authenticate"].startswith("Bearer") for r in seen)
        assert raised.group_contains(MCPError, match="key")


async def test_a_client_key_reaches_only_its_users_sessions(live: LiveApi) -> None:
    async with mcp_client(live, auth(CLIENT, "ann")) as ann:
        mine = await ann.call_tool("ask_billing", {"message": "hi"})
    assert mine.structured_content is not None
    theirs = {"message": "hi", "session_id": mine.structured_content["session_id"]}
    async with mcp_client(live, auth(CLIENT, "bob")) as bob:
        result = await bob.call_tool("ask_billing", theirs)
    assert result.is_error
    assert "no session" in _text(result)
    with pytest.raises(ExceptionGroup) as raised:  # a client key must name its user
        async with mcp_client(live, auth(CLIENT)):
            pass
    assert raised.group_contains(MCPError, match="X-User-Id")


async def _inbox_approval(live: LiveApi, user: str) -> dict[str, Any]:
    for _ in range(200):
        inbox = await live.http.get("/v1/approvals", headers=auth(CLIENT, user))
        assert inbox.status_code == 200, inbox.text
        if approvals := inbox.json()["approvals"]:
            first: dict[str, Any] = approvals[0]
            return first
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")
