"""`/v1/chat`: send a message, in a new or an existing session, and get the answer."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from sse_starlette import EventSourceResponse

from api import _sessions
from api.deps import CurrentCaller, RequestStack, State, TemporalClient
from api.problems import Problem
from api.routes.events import stream_turn
from api.schemas import ChatAccepted, ChatRequest, ChatResponse

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatResponse | ChatAccepted,
    responses={
        200: {"content": {"text/event-stream": {}}},
        202: {"model": ChatAccepted, "description": "async mode, or sync past `wait_s`"},
    },
)
async def chat(
    body: ChatRequest,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    stack: RequestStack,
) -> ChatResponse | ChatAccepted | EventSourceResponse:
    """Send `message`; in `sync` mode answer with the reply, in `async` mode with a turn URL.

    Without `session_id` a new session starts with `agent` (or the default agent).
    With `stream: true` the answer is the SSE stream of the turn, from
    `turn.started` to `turn.completed` or `turn.failed` (see GET …/events).
    """
    if body.response_schema is not None:
        raise Problem(501, "response_schema is not available yet", type_="not-implemented")
    if body.session_id:
        if body.agent is not None:
            raise Problem(
                422,
                "agent: set it when starting a session, not on an existing one",
                type_="invalid-request",
            )
        session, handle = await _sessions.describe_session(state, client, caller, body.session_id)
    else:
        session = await _sessions.start_session(
            state,
            client,
            caller,
            agent=_sessions.resolve_agent(state, body.agent),
            user_id=body.user_id or caller.user_id,
            metadata={},
        )
        handle = client.get_workflow_handle(session.workflow_id)
    if body.stream:
        return await stream_turn(
            state, client, stack, session, handle, body.message, new_session=not body.session_id
        )
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
            result = await asyncio.wait_for(_sessions.wait_turn(handle, sent.turn_id), body.wait_s)
        except TimeoutError:
            pass
        else:
            return _sessions.chat_response(session.id, result)
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = accepted.url
    return accepted
