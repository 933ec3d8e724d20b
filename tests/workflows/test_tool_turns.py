"""Full turns through the session workflow: model → MCP or Python tool → result to the model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from keel.formation import Formation, FormationError, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.mcp_servers import TIME, server_processes
from tests.workflows.helpers import chat, start_session

INVOICES = {"A1": {"total": 12}}


def tool_formation(tools: list[str], model: dict[str, Any] | None = None) -> Formation:
    """One agent with `tools`, the time MCP server, and the test Python tools."""
    return formation_from_data(
        {
            "models": {"default": model or {"provider": "scripted"}},
            "agents": [{"name": "clerk", "tools": tools}],
            "mcp_servers": [TIME.model_dump(exclude_defaults=True)],
            "python_tools": ["tests.fakes.python_tools"],
        },
        env={},
    )


async def test_a_turn_calls_mcp_and_python_tools_and_answers_with_their_results(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = tool_formation(["time.get_current_time", "lookup_invoice"])
    text = (
        'when? [[call time.get_current_time {"timezone": "UTC"}]]'
        ' [[call lookup_invoice {"invoice_id": "A1"}]]'
    )
    async with running_workers(client, settings, formation, store, services={"invoices": INVOICES}):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, text)
        [server] = server_processes("mcp_server_time")
        again = await chat(handle, 'later? [[call time.get_current_time {"timezone": "UTC"}]]')
        # Both turns went to one server process, which the worker keeps between calls.
        assert server_processes("mcp_server_time") == [server]

    assert result.status == "completed" and result.message is not None
    clock, invoice = result.message.content.removeprefix("tool results: ").split("; ")
    assert json.loads(clock.removeprefix("time.get_current_time -> "))["timezone"] == "UTC"
    assert invoice == 'lookup_invoice -> {"total":12}'
    assert again.status == "completed"
    messages = await store.messages(handle.id)
    assert [(m.role, m.name, m.is_error) for m in messages[:5]] == [
        ("user", None, False),
        ("assistant", None, False),
        ("tool", "time.get_current_time", False),
        ("tool", "lookup_invoice", False),
        ("assistant", None, False),
    ]
    assert not server.is_running() or server.status() == "zombie"  # stopped with the worker


async def test_tool_failures_reach_the_model_and_the_turn_goes_on(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = tool_formation(["time.get_current_time", "explode"])
    text = (
        '[[call time.get_current_time {"timezone": "Mars/Olympus"}]]'
        ' [[call explode {"message": "boom"}]]'
        " [[call time.convert_time {}]]"
    )
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, text)

    assert result.status == "completed"
    tools = [m for m in await store.messages(handle.id) if m.role == "tool"]
    assert all(m.is_error for m in tools)
    assert "Invalid timezone" in tools[0].content
    assert tools[1].content == "'explode' failed: RuntimeError: boom"
    assert tools[2].content == "tool 'time.convert_time' is not available to agent 'clerk'"


async def test_the_worker_refuses_tools_that_do_not_resolve(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = tool_formation(["time.get_current_tiem", "lookup_invoice", "no_such_tool"])
    with pytest.raises(FormationError) as caught:
        async with running_workers(client, settings, formation, store):
            pytest.fail("the workers must not start")

    assert str(caught.value).splitlines() == [
        "agents[0] (clerk).tools[0]: MCP server 'time' has no such tool",
        "agents[0] (clerk).tools[2]: no Python tool is called 'no_such_tool'; list its module"
        " under python_tools, or write an MCP tool as `server.tool`",
        "python_tools: tool 'lookup_invoice' injects 'invoices', which this worker was not given"
        " (pass it in `services` to worker_host)",
    ]


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    async with FakeLLMServer() as server:
        yield server


async def test_the_model_gets_the_mcp_schema_and_the_tool_result(
    client: Client, settings: Settings, store: TranscriptStore, llm: FakeLLMServer
) -> None:
    model = {"provider": "openai", "model": "fake", "base_url": llm.openai_base_url}
    formation = tool_formation(["time.get_current_time"], model)
    call = {"id": "c1", "name": "time__get_current_time", "arguments": {"timezone": "UTC"}}
    llm.enqueue_reply(tool_calls=[call])
    llm.enqueue_reply("It is noon.")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, "what time is it?")

    assert result.message is not None and result.message.content == "It is noon."
    [offered] = llm.requests[0].body["tools"]
    assert offered["function"]["name"] == "time__get_current_time"
    assert offered["function"]["description"] == "Get current time in a specific timezone"
    assert offered["function"]["parameters"]["required"] == ["timezone"]
    answer = llm.requests[1].body["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "c1"
    assert json.loads(answer["content"])["timezone"] == "UTC"
