"""`GET /v1/agents/{name}/tools`: tool schemas for a console's revise editor."""

from __future__ import annotations

import httpx
import pytest

from keel.formation import Formation, formation_from_data
from tests.mcp_servers import TIME
from tests.procs import free_port


@pytest.fixture
def formation() -> Formation:
    down = {"name": "down", "transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [
                {"name": "assistant", "tools": ["lookup", "time.get_current_time"]},
                {"name": "cut-off", "tools": ["search", "down.anything"]},
                {"name": "clock", "tools": ["time.*", "look*"]},
            ],
            "python_tools": ["tests.fakes.tools"],
            "mcp_servers": [TIME.model_dump(), down],
            "approvals": {"tools": {"lookup": "always", "time.convert_*": "always"}},
        },
        env={},
    )


@pytest.mark.timeout(60)
async def test_python_and_mcp_tools_come_with_their_schemas(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/agents/assistant/tools")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["warnings"] == []
    lookup, clock = body["tools"]
    assert (lookup["name"], lookup["requires_approval"]) == ("lookup", True)
    assert lookup["parameters"]["properties"]["invoice"]["type"] == "integer"
    assert lookup["description"]
    assert (clock["name"], clock["requires_approval"]) == ("time.get_current_time", False)
    assert (
        clock["parameters"]["type"] == "object" and "timezone" in clock["parameters"]["properties"]
    )


@pytest.mark.timeout(60)
async def test_an_unreachable_server_is_named_and_the_answer_still_succeeds(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/v1/agents/cut-off/tools")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["name"] for t in body["tools"]] == ["search", "down.anything"]
    assert body["tools"][0]["parameters"]["required"] == ["query"]
    assert body["tools"][1]["parameters"] is None
    assert body["warnings"] == ["MCP server 'down' could not be reached"]


async def test_an_unknown_agent_is_a_404_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/agents/nobody/tools")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/agent-not-found"


@pytest.mark.timeout(60)
async def test_patterns_resolve_to_the_tools_they_name_with_their_policies(
    api: httpx.AsyncClient,
) -> None:
    agent = (await api.get("/v1/agents/clock")).json()
    assert agent["tools"] == ["time.*", "look*"]
    assert agent["resolved_tools"] == ["time.get_current_time", "time.convert_time", "lookup"]
    listed = (await api.get("/v1/agents")).json()["agents"]
    assert [a["resolved_tools"] for a in listed][:2] == [
        ["lookup", "time.get_current_time"],
        ["search", "down.anything"],  # literals stay as written, reachable or not
    ]
    tools = (await api.get("/v1/agents/clock/tools")).json()["tools"]
    assert [(t["name"], t["requires_approval"]) for t in tools] == [
        ("time.get_current_time", False),
        ("time.convert_time", True),
        ("lookup", True),
    ]
