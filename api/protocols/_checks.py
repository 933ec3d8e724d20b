"""What the protocol endpoints check before a turn, as `/v1/chat` does: the text and the session."""

from __future__ import annotations

from temporalio.client import Client

from api import _sessions
from api._auth import Caller
from api._limits import check_message
from api.deps import AppState
from api.problems import Problem


async def turn_agent(
    state: AppState,
    client: Client,
    caller: Caller,
    text: str,
    *,
    session_id: str | None,
    agent: str | None,
) -> str:
    """The agent to answer `text`: the session's, or a new session's `agent` (or the default).

    Args:
        state: the API's shared state.
        client: the Temporal client.
        caller: who sends the message.
        text: the message.
        session_id: the session to continue; None starts one.
        agent: the agent the caller asked for, if any.

    Raises:
        Problem: 422 for an empty or too long message, or an agent other than the
            session's; 404 for an unknown agent or a session the caller cannot see;
            409 for a closed session.
    """
    if not text.strip():
        raise Problem(422, "the message is empty", type_="invalid-message")
    limits = (state.settings.max_message_chars, state.formation.sessions.max_message_chars)
    check_message(text, *limits)
    if session_id is None:
        return _sessions.resolve_agent(state, agent).name
    described = await _sessions.describe_session(state, client, caller, session_id)
    session = described.session
    if session.status != "active":
        raise Problem(409, "the session is closed", type_="session-closed")
    if agent is not None and agent != session.agent:
        raise Problem(
            422,
            f"session {session_id!r} talks to agent {session.agent!r}, not {agent!r}",
            type_="invalid-request",
        )
    return session.agent
