"""McpPool against real MCP servers: pooling, reconnection, caching, transports, secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from activities._mcp import McpPool, McpUnavailable, result_text
from keel.formation import McpServerConfig
from tests.mcp_servers import (
    PROBE,
    TIME,
    everything_http,
    everything_stdio,
    free_port,
    probe_http,
    server_processes,
)

UTC = {"timezone": "UTC"}


@pytest.fixture
async def pool() -> AsyncIterator[McpPool]:
    opened = McpPool([TIME, PROBE])
    yield opened
    await opened.aclose()


def pids(marker: str) -> set[int]:
    return {p.pid for p in server_processes(marker)}


async def test_calls_reuse_one_server_process(pool: McpPool) -> None:
    first = await pool.call_tool("time", "get_current_time", UTC)
    running = pids("mcp_server_time")
    results = await asyncio.gather(
        *(pool.call_tool("time", "get_current_time", UTC) for _ in range(5))
    )

    assert json.loads(result_text(first))["timezone"] == "UTC"
    assert all(not r.is_error for r in results)
    assert len(running) == 1
    assert pids("mcp_server_time") == running


async def test_a_killed_server_is_replaced_on_the_next_call(pool: McpPool) -> None:
    await pool.call_tool("time", "get_current_time", UTC)
    [old] = server_processes("mcp_server_time")
    old.kill()
    old.wait(timeout=5)

    result = await pool.call_tool("time", "get_current_time", UTC)

    assert not result.is_error
    [new] = server_processes("mcp_server_time")
    assert new.pid != old.pid


async def test_a_server_that_dies_mid_call_is_retried_once_then_reported(pool: McpPool) -> None:
    with pytest.raises(McpUnavailable, match="'probe' closed the connection"):
        await pool.call_tool("probe", "crash", {})
    # The pool stays usable: the next call gets a fresh process.
    result = await pool.call_tool("probe", "sleep", {"seconds": 0})
    assert result_text(result) == "awake"


async def test_aclose_stops_the_servers() -> None:
    pool = McpPool([TIME])
    await pool.call_tool("time", "get_current_time", UTC)
    [process] = server_processes("mcp_server_time")

    await pool.aclose()

    assert not process.is_running() or process.status() == "zombie"
    with pytest.raises(McpUnavailable, match="shutting down"):
        await pool.call_tool("time", "get_current_time", UTC)


async def test_the_tool_list_is_cached_until_refreshed(pool: McpPool) -> None:
    listed = await pool.list_tools("time")
    again = await pool.list_tools("time")
    refreshed = await pool.list_tools("time", refresh=True)

    assert {tool.name for tool in listed} >= {"get_current_time", "convert_time"}
    assert again is listed
    assert refreshed is not listed
    assert [t.name for t in refreshed] == [t.name for t in listed]


async def test_an_expired_tool_list_is_fetched_again() -> None:
    pool = McpPool([TIME], list_ttl_s=0)
    try:
        assert await pool.list_tools("time") is not await pool.list_tools("time")
    finally:
        await pool.aclose()


async def test_the_idempotency_key_travels_in_the_request_meta(pool: McpPool) -> None:
    result = await pool.call_tool("probe", "idempotency_key", {}, idempotency_key="wf/t1/call_1")
    assert result_text(result) == "wf/t1/call_1"


async def test_everything_server_over_stdio() -> None:
    pool = McpPool([everything_stdio()])
    try:
        names = {tool.name for tool in await pool.list_tools("everything")}
        echo = await pool.call_tool("everything", "echo", {"message": "hi"})
        image = await pool.call_tool("everything", "get-tiny-image", {})
    finally:
        await pool.aclose()

    assert {"echo", "get-sum", "get-tiny-image"} <= names
    assert result_text(echo) == "Echo: hi"
    assert "[image/png " in result_text(image) and " bytes]" in result_text(image)


async def test_everything_server_over_http_reconnects_after_a_restart() -> None:
    port = free_port()
    config = McpServerConfig(
        name="everything", transport="http", url=f"http://127.0.0.1:{port}/mcp"
    )
    pool = McpPool([config])
    try:
        async with everything_http(port):
            first = await pool.call_tool("everything", "get-sum", {"a": 2, "b": 3})
        with pytest.raises(McpUnavailable):
            await pool.call_tool("everything", "echo", {"message": "down"})
        async with everything_http(port):
            again = await pool.call_tool("everything", "echo", {"message": "back"})
    finally:
        await pool.aclose()

    assert "5" in result_text(first)
    assert result_text(again) == "Echo: back"


async def test_http_headers_reach_the_server() -> None:
    port = free_port()
    config = McpServerConfig(
        name="probe",
        transport="http",
        url=f"http://127.0.0.1:{port}/mcp",
        headers={"Authorization": "Bearer s3cret-token"},
    )
    pool = McpPool([config])
    try:
        async with probe_http(port):
            result = await pool.call_tool("probe", "header", {"name": "Authorization"})
    finally:
        await pool.aclose()
    assert result_text(result) == "Bearer s3cret-token"


async def test_unreachable_servers_are_reported_without_their_secrets() -> None:
    port = free_port()
    down = McpServerConfig(
        name="docs",
        transport="http",
        url=f"http://127.0.0.1:{port}/mcp?token=sup3r-secret",
        headers={"Authorization": "Bearer sup3r-secret-header"},
    )
    missing = McpServerConfig(name="gone", transport="stdio", command="/nonexistent/mcp-server")
    pool = McpPool([down, missing])
    try:
        with pytest.raises(McpUnavailable) as http_error:
            await pool.list_tools("docs")
        with pytest.raises(McpUnavailable) as stdio_error:
            await pool.call_tool("gone", "anything", {})
    finally:
        await pool.aclose()

    assert str(http_error.value).startswith("cannot connect to MCP server 'docs': ")
    assert "sup3r" not in str(http_error.value)
    assert "FileNotFoundError" in str(stdio_error.value)
