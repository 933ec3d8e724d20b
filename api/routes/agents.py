"""`/v1/agents`: the agents of the formation."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from api import _sessions
from api._idempotency import Idempotent
from api._limits import check_message
from api._tools import AgentToolList
from api._turns import TurnRequest, send_claimed_turn
from api.deps import AppState, CurrentCaller, State, TemporalClient
from api.problems import problem_responses
from api.schemas import AgentList, AgentName, AgentOut, ChatAccepted, ChatResponse, OptionalId
from keel.formation import AgentConfig

router = APIRouter(prefix="/v1/agents", tags=["agents"])


async def _out(state: AppState, agent: AgentConfig) -> AgentOut:
    return AgentOut(
        name=agent.name,
        role=agent.role,
        description=agent.description,
        model=agent.model,
        tools=agent.tools,
        resolved_tools=await state.tool_schemas.resolved(agent),
        routes=agent.routes,
    )


@router.get("")
async def list_agents(state: State) -> AgentList:
    """Every agent of the formation, with the tools its patterns resolve to."""
    agents = state.formation.agents
    return AgentList(agents=list(await asyncio.gather(*(_out(state, a) for a in agents))))


@router.get("/{name}", responses=problem_responses(404))
async def get_agent(name: AgentName, state: State) -> AgentOut:
    """One agent; 404 if the formation has none of that name."""
    return await _out(state, _sessions.resolve_agent(state, name))


@router.get("/{name}/tools", responses=problem_responses(404))
async def get_agent_tools(name: AgentName, state: State) -> AgentToolList:
    """The agent's tools with their arguments' JSON schemas (for editing revised arguments).

    Schemas come from the tools themselves (Python tools, MCP servers listed from
    this process), never from a session's history. An MCP server that cannot be
    reached within a few seconds leaves its tools' `parameters` null and is named in
    `warnings`; the answer is still 200.
    """
    return await state.tool_schemas.of(_sessions.resolve_agent(state, name))


class RunAgent(BaseModel):
    """`POST /v1/agents/{name}/run`."""

    message: str = Field(min_length=1, max_length=1_000_000)
    session_id: OptionalId = None
    wait_s: float = Field(default=120, gt=0, le=3600)


@router.post(
    "/{name}/run",
    responses={
        202: {"model": ChatAccepted, "description": "still running after `wait_s`"},
        **problem_responses(404, 409),
    },
)
async def run_agent(
    name: AgentName,
    body: RunAgent,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    idempotency: Idempotent,
) -> ChatResponse | ChatAccepted:
    """Run one agent (a specialist, say) directly, in a new session or in `session_id`."""
    check_message(
        body.message, state.settings.max_message_chars, state.formation.sessions.max_message_chars
    )
    agent = _sessions.resolve_agent(state, name)
    if body.session_id:
        await _sessions.agent_session(state, client, caller, body.session_id, agent)
    claim = await idempotency.claim(caller, body, "turn_id", "session_id")
    request = TurnRequest(
        text=body.message,
        session_id=body.session_id,
        agent=agent.name,
        wait_s=body.wait_s,
    )
    answer = await send_claimed_turn(state, client, caller, request, claim, response=response)
    assert not isinstance(answer, EventSourceResponse)
    return answer
