"""`/v1/agents`: the agents of the formation."""

from __future__ import annotations

from fastapi import APIRouter

from api._sessions import resolve_agent
from api.deps import State
from api.problems import problem_responses
from api.schemas import AgentList, AgentName, AgentOut
from keel.formation import AgentConfig

router = APIRouter(prefix="/v1/agents", tags=["agents"])


def _out(agent: AgentConfig) -> AgentOut:
    return AgentOut(
        name=agent.name,
        role=agent.role,
        description=agent.description,
        model=agent.model,
        tools=agent.tools,
        routes=agent.routes,
    )


@router.get("")
async def list_agents(state: State) -> AgentList:
    """Every agent of the formation."""
    return AgentList(agents=[_out(a) for a in state.formation.agents])


@router.get("/{name}", responses=problem_responses(404))
async def get_agent(name: AgentName, state: State) -> AgentOut:
    """One agent; 404 if the formation has none of that name."""
    return _out(resolve_agent(state, name))
