"""`/v1/models` and `/v1/chat/completions`: Keel's agents behind OpenAI's chat API.

A chat completion is a turn, sent through the one turn path (`api._turns`), so
keys, limits, idempotency and isolation are those of `/v1/chat`. Errors are in
OpenAI's shape (`api._openai_errors`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response
from sse_starlette import EventSourceResponse

from api import _sessions
from api._idempotency import Idempotent
from api._openai_chat import SESSION_HEADER, chunk_frames, completion_of, openai_turn
from api._openai_errors import openai_responses
from api._turns import TurnRequest, claimed, send_turn
from api.deps import AppState, CurrentCaller, RequestStack, State, StreamClaim, TemporalClient
from api.openai_schemas import ChatCompletion, ChatCompletionRequest, ModelList, ModelOut
from api.problems import Problem
from api.schemas import ID_MAX_LENGTH, ID_PATTERN, ChatAccepted, ChatResponse
from keel.formation import AgentConfig
from keel.session import FINAL_TURN_STATUSES

router = APIRouter(prefix="/v1", tags=["openai"])
_STRING = {"type": "string"}
ModelName = Annotated[str, Path(max_length=256)]
KeelSessionId = Annotated[
    str | None,
    Header(
        alias=SESSION_HEADER,
        pattern=ID_PATTERN,
        max_length=ID_MAX_LENGTH,
        description="Continue this session (its transcript is the history); without it a new"
        " session starts with the request's earlier messages.",
    ),
]


@router.get("/models")
async def list_models(state: State) -> ModelList:
    """The formation's agents, as models: a completion's `model` names one."""
    created = _loaded_at(state)
    return ModelList(data=[ModelOut(id=a.name, created=created) for a in state.formation.agents])


@router.get("/models/{model}", responses=openai_responses(404))
async def retrieve_model(model: ModelName, state: State) -> ModelOut:
    """One agent, as a model; 404 `model_not_found` if the formation has none of that name."""
    return ModelOut(id=_agent(state, model).name, created=_loaded_at(state))


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "headers": {SESSION_HEADER: {"description": "The session", "schema": _STRING}},
        },
        **openai_responses(404, 409),
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    stack: RequestStack,
    claim_stream: StreamClaim,
    idempotency: Idempotent,
    session_id: KeelSessionId = None,
) -> ChatCompletion | EventSourceResponse:
    """The answer of agent `model` to the last user message, as a new turn.

    With `X-Keel-Session-Id` the turn continues that session; without it a new
    session starts, its transcript the request's earlier messages. The answer
    carries the session's `X-Keel-Session-Id`. With `stream: true` it is SSE
    `chat.completion.chunk` frames, then `data: [DONE]`. Without, a turn still
    running after `wait_s` (a tool call waiting for a person's approval) answers
    409 `approval_pending` or `turn_pending`: the turn goes on, and the same request
    with the same `Idempotency-Key` answers with its outcome.
    """
    agent = _agent(state, body.model)
    limits = (state.settings.max_message_chars, state.formation.sessions.max_message_chars)
    turn = openai_turn(body, *limits)
    if session_id:
        await _sessions.agent_session(state, client, caller, session_id, agent)
    waiting = f"{caller.tenant}/{caller.user_id}" if caller.limited and not body.stream else None
    if body.stream:
        await claim_stream()
    claim = await idempotency.claim(caller, body, "turn_id", "session_id")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    request = TurnRequest(
        text=turn.text,
        session_id=session_id,
        agent=agent.name,
        response_schema=turn.response_schema,
        mode="stream" if body.stream else "sync",
        wait_s=body.wait_s,
        seed=None if session_id else turn.seed,
        render=chunk_frames(claim.ids["turn_id"], agent.name, include_usage=include_usage),
    )
    async with state.limits.turns.hold(waiting):
        answer = await send_turn(
            state, client, caller, claimed(request, claim), response=response, stack=stack
        )
    if isinstance(answer, EventSourceResponse):
        answer.headers[SESSION_HEADER] = answer.headers["x-session-id"]
        return await claim.finish(answer, response)
    if isinstance(answer, ChatAccepted) or answer.status not in FINAL_TURN_STATUSES:
        raise await _pending(state, client, caller, answer, body.wait_s)
    completion = completion_of(answer, agent.name)
    response.headers[SESSION_HEADER] = answer.session_id
    return await claim.finish(completion, response)


def _agent(state: AppState, model: str) -> AgentConfig:
    try:
        return state.formation.agent(model)
    except KeyError:
        raise Problem(
            404,
            f"the model {model!r} does not exist: models are this Keel's agents (GET /v1/models)",
            type_="agent-not-found",
            param="model",
        ) from None


def _loaded_at(state: AppState) -> int:
    """When this process loaded its formation, in Unix seconds."""
    return int(time.time() - (time.monotonic() - state.started_at))


async def _pending(
    state: AppState,
    client: TemporalClient,
    caller: CurrentCaller,
    answer: ChatResponse | ChatAccepted,
    wait_s: float,
) -> Problem:
    """The error for a turn with no answer yet: what it waits for, and how to follow it up."""
    session, turn = answer.session_id, answer.turn_id
    described = await _sessions.describe_session(state, client, caller, session)
    pending = [a.id for a in await _sessions.pending_approvals(described) if a.turn_id == turn]
    again = "send this request again with the same Idempotency-Key for the answer"
    if pending:
        detail = (
            f"turn {turn} of session {session} waits for approval {', '.join(pending)}: decide"
            f" with POST /v1/sessions/{session}/approvals/{pending[0]}, then {again}"
        )
    else:
        detail = (
            f"turn {turn} of session {session} has no answer after {wait_s:g} s; it goes on:"
            f" {again}, or read GET /v1/sessions/{session}/turns/{turn}"
        )
    return Problem(
        409,
        detail,
        type_="approval-pending" if pending else "turn-pending",
        headers={SESSION_HEADER: session},
        session_id=session,
        turn_id=turn,
        approval_ids=pending or None,
    )
