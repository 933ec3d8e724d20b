"""`/mcp`: the formation's agents as MCP tools (`ask_<agent>`), served by the `mcp` SDK.

Stateless streamable HTTP: every request stands alone, so any API process can
answer any call and no MCP session outlives its request. Keel's session is the
conversation: a tool answer carries its `session_id`, and a call that passes
it back continues that session.
"""

from __future__ import annotations

from typing import Any

import mcp_types as mt
from fastapi import Response
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from api._turns import TurnRequest, send_turn
from api.deps import AppState
from api.problems import Problem
from api.protocols._checks import turn_agent
from api.protocols._gate import caller_of
from api.schemas import ID_MAX_LENGTH, ID_PATTERN, ChatAccepted, ChatResponse
from keel import __version__
from keel.formation import AgentConfig

TOOL_PREFIX = "ask_"
WAIT_S = 3600.0
"""How long a call waits for its turn (an approval may hold it); past it, it answers with the
ids, and the turn goes on (GET /v1/sessions/{id}/turns/{turn_id})."""

_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string", "description": "Pass it back to continue."},
        "turn_id": {"type": "string"},
        "status": {"type": "string", "description": "running, or how the turn ended"},
    },
    "required": ["session_id", "turn_id"],
}


class AskArguments(BaseModel):
    """The arguments of every `ask_<agent>` tool."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, description="What to say to the agent.")
    session_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="Continue this conversation (the session_id of an earlier answer).",
    )


def mcp_app(state: AppState) -> tuple[StreamableHTTPASGIApp, StreamableHTTPSessionManager]:
    """The ASGI app of `/mcp` and the session manager the API's lifespan must run."""
    manager = StreamableHTTPSessionManager(app=_server(state), stateless=True)
    return StreamableHTTPASGIApp(manager), manager


def _server(state: AppState) -> Server[Any]:
    agents = {TOOL_PREFIX + agent.name: agent for agent in state.formation.agents}
    tools = [_tool(name, agent) for name, agent in agents.items()]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListToolsResult:
        return mt.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult:
        agent = agents.get(params.name)
        if agent is None:
            known = ", ".join(agents)
            raise MCPError(mt.INVALID_PARAMS, f"no tool {params.name!r}; the tools are {known}")
        assert isinstance(ctx.request, Request), "streamable HTTP attaches its request"
        try:
            arguments = AskArguments.model_validate(params.arguments or {})
        except ValidationError as err:
            return _error(_invalid(err))
        try:
            return await _ask(state, ctx.request, agent, arguments)
        except Problem as problem:
            return _error(problem.detail)

    return Server(
        "keel",
        version=__version__,
        instructions="Each tool asks one agent; pass an answer's session_id back to continue.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _tool(name: str, agent: AgentConfig) -> mt.Tool:
    return mt.Tool(
        name=name,
        title=f"Ask {agent.name}",
        description=agent.description or f"Send a message to the {agent.name} agent.",
        input_schema=AskArguments.model_json_schema(),
        output_schema=_OUTPUT_SCHEMA,
    )


async def _ask(
    state: AppState, request: Request, agent: AgentConfig, arguments: AskArguments
) -> mt.CallToolResult:
    caller = caller_of(request)
    if state.client is None:
        raise Problem(503, "Temporal is not reachable yet", type_="temporal-unavailable")
    client = state.client
    session_id = arguments.session_id
    text = arguments.message
    await turn_agent(state, client, caller, text, session_id=session_id, agent=agent.name)
    turn = TurnRequest(
        text=text,
        session_id=session_id,
        agent=None if session_id else agent.name,
        wait_s=WAIT_S,
    )
    # A call waits like a sync chat, and holds a place among its user's waiting turns.
    waiting = f"{caller.tenant}/{caller.user_id}" if caller.limited else None
    async with state.limits.turns.hold(waiting):
        answer = await send_turn(state, client, caller, turn, response=Response())
    assert isinstance(answer, ChatResponse | ChatAccepted), "a sync turn answers in JSON"
    return _result(answer)


def _result(answer: ChatResponse | ChatAccepted) -> mt.CallToolResult:
    ids = {"session_id": answer.session_id, "turn_id": answer.turn_id}
    if isinstance(answer, ChatAccepted):
        text = f"The turn is still running; read it at {answer.url}."
        return _text(text, {**ids, "status": "running"}, is_error=False)
    if answer.status == "completed" and answer.message is not None:
        return _text(answer.message.content, {**ids, "status": "completed"}, is_error=False)
    text = f"The turn {answer.status}: {answer.error or 'no answer'}"
    return _text(text, {**ids, "status": answer.status}, is_error=True)


def _text(text: str, structured: dict[str, Any] | None, *, is_error: bool) -> mt.CallToolResult:
    return mt.CallToolResult(
        content=[mt.TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=is_error,
    )


def _error(text: str) -> mt.CallToolResult:
    return _text(text, None, is_error=True)


def _invalid(err: ValidationError) -> str:
    # Name the field and the reason; echoing the input could echo a secret.
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in err.errors()
    )
