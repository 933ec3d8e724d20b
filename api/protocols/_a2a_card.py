"""The A2A agent card: one skill per agent of the formation, streaming on, bearer keys declared."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.deps import AppState
from keel import __version__

A2A_PATH = "/a2a"
"""The JSON-RPC endpoint the card names."""
CARD_PATH = "/.well-known/agent-card.json"
SKILL_KEY = "skill"
"""The message `metadata` key that names the skill (agent) of a new conversation."""
_BEARER = "bearer"


def agent_card(state: AppState, base_url: str) -> AgentCard:
    """The card, with the JSON-RPC endpoint at `base_url` + `/a2a`."""
    formation = state.formation
    default = formation.default_agent.name
    card = AgentCard(
        name=f"Keel ({formation.id})" if formation.id else "Keel",
        description=(
            f"The agents of this Keel formation. A message goes to the skill named by its"
            f" metadata.{SKILL_KEY}, else to {default!r}; its contextId continues a session."
        ),
        version=__version__,
        supported_interfaces=[
            AgentInterface(
                url=base_url.rstrip("/") + A2A_PATH,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id=agent.name,
                name=agent.name,
                description=agent.description or f"The {agent.name} agent.",
                tags=[agent.role, *(["default"] if agent.name == default else [])],
            )
            for agent in formation.agents
        ],
    )
    if state.keys.enabled:
        card.security_schemes[_BEARER].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="bearer",
                    description="A Keel admin or client key; client keys also send X-User-Id.",
                )
            )
        )
        card.security_requirements.append(
            SecurityRequirement(schemes={_BEARER: StringList(list=[])})
        )
    return card


def card_route(state: AppState) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The endpoint of `GET /.well-known/agent-card.json` (public: the card is how clients
    learn that they need a key)."""

    async def get_card(request: Request) -> JSONResponse:
        return JSONResponse(agent_card_to_dict(agent_card(state, str(request.base_url))))

    return get_card
