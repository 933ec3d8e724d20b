"""`/v1/chat`: send a message, in a new or an existing session, and get the answer."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

from api import _sessions
from api._limits import check_message
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import ChatAccepted, ChatRequest, ChatResponse

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post(
    "/chat",
    responses={
        202: {"model": ChatAccepted, "description": "async mode, or sync past `wait_s`"},
        **problem_responses(404, 409),
    },
)
async def chat(
    body: ChatRequest,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
) -> ChatResponse | ChatAccepted:
    """Send `message`; in `sync` mode answer with the reply, in `async` mode with a turn URL.

    Without `session_id` a new session starts with `agent` (or the default agent).
    """
    # Options this server cannot honour yet are the request's problem (422), not a 5xx.
    if body.stream:
        raise Problem(422, "stream: streaming chat is not available yet", type_="not-supported")
    if body.response_schema is not None:
        raise Problem(422, "response_schema is not available yet", type_="not-supported")
    check_message(
        body.message, state.settings.max_message_chars, state.formation.sessions.max_message_chars
    )
    if body.session_id:
        if body.agent is not None:
            raise Problem(
                422,
                "agent: set it when starting a session, not on an existing one",
                type_="invalid-request",
            )
        session, handle = await _sessions.describe_session(state, client, caller, body.session_id)
        owner = session.user_id
    else:
        agent = _sessions.resolve_agent(state, body.agent)
        owner = caller.owner_for(body.user_id)
    # A sync chat holds a place among its user's waiting turns from before the
    # message is sent, so a refused request has started nothing.
    waiting = f"{caller.tenant}/{owner}" if caller.limited and body.mode == "sync" else None
    with state.limits.turns.hold(waiting):
        if not body.session_id:
            session = await _sessions.start_session(
                state, client, caller, agent=agent, user_id=owner, metadata={}
            )
            handle = client.get_workflow_handle(session.workflow_id)
        sent = await _sessions.send_message(handle, body.message)
        accepted = ChatAccepted(
            session_id=session.id,
            turn_id=sent.turn_id,
            status="queued",
            url=f"/v1/sessions/{session.id}/turns/{sent.turn_id}",
            stream_offset=sent.stream_offset,
        )
        if body.mode == "sync":
            try:
                result = await asyncio.wait_for(
                    _sessions.wait_turn(handle, sent.turn_id), body.wait_s
                )
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                # Past `wait_s`. The update call, cancelled by the timeout, may say so
                # in its own words rather than as a CancelledError.
                pass
            else:
                return _sessions.chat_response(session.id, result)
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = accepted.url
    return accepted
