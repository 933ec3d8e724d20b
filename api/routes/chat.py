"""`/v1/chat`: send a message, in a new or an existing session, and get the answer."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sse_starlette import EventSourceResponse

from api._idempotency import Idempotent
from api._limits import check_message
from api._turns import TurnRequest, check_response_schema, send_claimed_turn
from api.deps import CurrentCaller, RequestStack, State, StreamClaim, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import ChatAccepted, ChatRequest, ChatResponse

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatResponse | ChatAccepted,
    responses={
        200: {"content": {"text/event-stream": {}}},
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
    stack: RequestStack,
    claim_stream: StreamClaim,
    idempotency: Idempotent,
) -> ChatResponse | ChatAccepted | EventSourceResponse:
    """Send `message`; in `sync` mode answer with the reply, in `async` mode with a turn URL.

    Without `session_id` a new session starts with `agent` (or the default agent).
    With `stream: true` the answer is the SSE stream of the turn, from
    `turn.started` to `turn.completed` or `turn.failed` (see GET …/events).
    """
    if body.response_schema is not None:
        check_response_schema(body.response_schema)
    check_message(
        body.message, state.settings.max_message_chars, state.formation.sessions.max_message_chars
    )
    if body.session_id and body.agent is not None:
        raise Problem(
            422,
            "agent: set it when starting a session, not on an existing one",
            type_="invalid-request",
        )
    # A sync chat holds a place among its user's waiting turns from before the
    # message is sent, so a refused request has started nothing.
    owner = caller.owner_for(body.user_id)
    waiting = f"{caller.tenant}/{owner}" if caller.limited and body.mode == "sync" else None
    if body.stream:
        await claim_stream()
    claim = await idempotency.claim(caller, body, "turn_id", "session_id")
    request = TurnRequest(
        text=body.message,
        session_id=body.session_id,
        agent=body.agent,
        user_id=body.user_id,
        response_schema=body.response_schema,
        mode="stream" if body.stream else body.mode,
        wait_s=body.wait_s,
    )
    async with state.limits.turns.hold(waiting):
        return await send_claimed_turn(
            state, client, caller, request, claim, response=response, stack=stack
        )
