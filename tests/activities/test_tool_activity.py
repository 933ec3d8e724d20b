"""The tool activity: Python and MCP tools, failures as error results, schemas for the LLM."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import McpPool, ToolActivities, ToolCatalog
from activities._heartbeat import with_heartbeat
from keel.contracts.tools import CallToolInput, CallToolResult
from keel.tools import load_python_tools
from tests.mcp_servers import PROBE, TIME, everything_stdio

PYTHON_TOOLS = load_python_tools(["tests.fakes.python_tools"])
INVOICES = {"A1": {"total": 12}}


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[McpPool]:
    """Shared by the module's tests, as a worker shares it across calls."""
    opened = McpPool([TIME, PROBE.model_copy(update={"timeout_s": 1.5})])
    yield opened
    await opened.aclose()


@pytest.fixture
def tools(pool: McpPool) -> ToolActivities:
    return ToolActivities(ToolCatalog(PYTHON_TOOLS, pool), services={"invoices": INVOICES})


def environment(start_to_close: timedelta = timedelta(minutes=5)) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=start_to_close)
    return env


async def call(
    tools: ToolActivities,
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    env: ActivityEnvironment | None = None,
) -> CallToolResult:
    input = CallToolInput(
        session="keel/test/s1", turn_id="t1", call_id="call_1", name=name, arguments=arguments or {}
    )
    return await (env or environment()).run(tools.call_tool, input)


async def test_an_mcp_tool_answers(tools: ToolActivities) -> None:
    result = await call(tools, "time.get_current_time", {"timezone": "UTC"})
    assert not result.is_error
    assert json.loads(result.content)["timezone"] == "UTC"


async def test_the_idempotency_key_reaches_mcp_and_python_tools(tools: ToolActivities) -> None:
    mcp = await call(tools, "probe.idempotency_key")
    python = await call(tools, "whoami")
    assert mcp.content == "keel/test/s1/t1/call_1"
    assert json.loads(python.content)["key"] == "keel/test/s1/t1/call_1"


async def test_python_tools_get_their_services(tools: ToolActivities) -> None:
    result = await call(tools, "lookup_invoice", {"invoice_id": "A1"})
    assert result == CallToolResult(content='{"total":12}')


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("nope", {}, "no tool named 'nope' is available"),
        ("time.nope", {}, "MCP error from 'time.nope': Unknown tool: nope"),
        ("add", {"a": "x"}, "invalid arguments for 'add': a: Input should be a valid integer"),
        ("explode", {"message": "boom"}, "'explode' failed: RuntimeError: boom"),
        ("nap", {"seconds": 5}, "tool 'nap' timed out after 0.2 s"),
        ("probe.sleep", {"seconds": 10}, "tool 'probe.sleep' timed out after 1.5 s"),
        (
            "time.get_current_time",
            {"timezone": "Mars/Olympus"},
            "Error executing tool get_current_time: Invalid timezone",
        ),
        ("probe.crash", {}, "MCP server 'probe' closed the connection"),
    ],
)
async def test_failures_come_back_as_error_results(
    tools: ToolActivities, name: str, arguments: dict[str, Any], message: str
) -> None:
    result = await call(tools, name, arguments)
    assert result.is_error
    assert result.content.startswith(message)


async def test_a_timed_out_mcp_call_leaves_the_session_usable(tools: ToolActivities) -> None:
    assert (await call(tools, "probe.sleep", {"seconds": 10})).is_error
    assert (await call(tools, "probe.sleep", {"seconds": 0})).content == "awake"


async def test_a_tool_limit_stays_inside_the_activity_timeout(tools: ToolActivities) -> None:
    result = await call(
        tools, "probe.sleep", {"seconds": 10}, env=environment(timedelta(seconds=6))
    )
    assert result.content == "tool 'probe.sleep' timed out after 1 s"


async def test_tools_outside_the_exposed_set_are_refused(pool: McpPool) -> None:
    tools = ToolActivities(ToolCatalog(PYTHON_TOOLS, pool, exposed=["add"]))
    assert (await call(tools, "add", {"a": 1})).content == "2"
    refused = await call(tools, "time.get_current_time", {"timezone": "UTC"})
    assert refused == CallToolResult(
        content="no tool named 'time.get_current_time' is available", is_error=True
    )


async def test_calls_heartbeat(tools: ToolActivities, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment()
    beats: list[object] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    # The first heartbeat comes after one interval: short calls pay for none.
    monkeypatch.setattr(
        "activities.tools.with_heartbeat", functools.partial(with_heartbeat, every_s=0.01)
    )
    await call(tools, "nap", {"seconds": 0.05}, env=env)
    assert beats


async def test_non_text_content_is_summarised() -> None:
    pool = McpPool([everything_stdio()])
    try:
        result = await call(ToolActivities(ToolCatalog(mcp=pool)), "everything.get-tiny-image")
    finally:
        await pool.aclose()
    lines = result.content.splitlines()
    assert lines[0] == "Here's the image you requested:"
    assert lines[1].startswith("[image/png ") and lines[1].endswith(" bytes]")


async def test_the_catalog_gives_the_model_real_schemas(pool: McpPool) -> None:
    gone = TIME.model_copy(update={"name": "gone", "command": "/nonexistent/server"})
    broken = McpPool([TIME, gone])
    catalog = ToolCatalog(PYTHON_TOOLS, broken)
    try:
        specs = await catalog.specs(["time.get_current_time", "add", "gone.x", "nope"])
    finally:
        await broken.aclose()

    assert [s.name for s in specs] == ["time.get_current_time", "add"]
    clock = specs[0]
    assert clock.description == "Get current time in a specific timezone"
    assert clock.parameters["required"] == ["timezone"]
    assert specs[1].parameters == PYTHON_TOOLS["add"].parameters
