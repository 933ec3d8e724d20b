"""Sending a message as a turn: the one path of `/v1/chat`, agent runs and triggers."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, Literal

import jsonschema
from fastapi import Response
from sse_starlette import EventSourceResponse
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError

from api import _sessions
from api._event_stream import (
    Outs,
    Render,
    SessionView,
    frames,
    open_deltas,
    open_listener,
    session_outs,
    sse_response,
)
from api._idempotency import Claim, final_answer
from api._seed import SessionSeed
from api._shapes import chat_response, ended_turn
from api._streams import StreamItem
from api._tracing import mark_turn
from api.deps import AppState, Caller
from api.problems import Problem
from api.schemas import ChatAccepted, ChatResponse
from keel.names import Rejections
from keel.session import SendMessageInput, SendMessageResult, TurnResult
from keel.session_handle import SessionHandle, SessionRejected

TurnMode = Literal["sync", "async", "stream"]


@dataclass(frozen=True)
class TurnRequest:
    """A message for a session, and how the caller wants the answer."""

    text: str
    session_id: str | None = None
    """The session to continue; None starts one."""
    agent: str | None = None
    """A new session's agent (the formation's default when None)."""
    user_id: str | None = None
    """A new session's owner, when the caller may name one."""
    response_schema: dict[str, Any] | None = None
    mode: TurnMode = "sync"
    wait_s: float = 120
    """In sync mode, how long to wait for the answer before answering 202."""
    turn_id: str | None = None
    """The turn's id; chosen here when None. A retried request passes the first one's."""
    new_session_id: str | None = None
    """The id of the session to start (without `session_id`); chosen when None."""
    retried: bool = False
    """An earlier attempt with these ids may have started the session: no limit check."""
    seed: SessionSeed | None = None
    """What a new session starts with (earlier messages, instructions); see `api._seed`."""
    render: Render = frames
    """In stream mode, the frames of the turn's events: Keel's own, or a protocol's."""


@dataclass(frozen=True)
class SentTurn:
    """Where a turn went."""

    session_id: str
    turn_id: str
    new_session: bool


async def send_turn(
    state: AppState,
    client: Client,
    caller: Caller,
    request: TurnRequest,
    *,
    response: Response,
    stack: AsyncExitStack | None = None,
) -> ChatResponse | ChatAccepted | EventSourceResponse:
    """Send the message, in the session named or a new one, and answer as `request.mode` asks.

    The API picks the turn id, so a caller that stops waiting still has a turn
    URL; it is also the message's update id, so Temporal answers a repeated send
    with the first one's outcome, and reads find the turn without a worker.
    """
    handle, sent = await _target(state, client, caller, request)
    mark_turn(sent.session_id, sent.turn_id)
    message = _message(caller, request, sent)
    if request.mode == "stream":
        assert stack is not None, "a streamed turn needs the request's stack"
        return await _stream_turn(state, client, stack, handle, sent, message, request.render)
    if request.mode == "async":
        queued = await _send(handle, message)
        return _accepted(sent, response, stream_offset=queued.stream_offset if queued else None)
    try:
        return await asyncio.wait_for(_chat(state, handle, message), request.wait_s)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # Past `wait_s`. The update call, cancelled by the timeout, may say so
        # in its own words rather than as a CancelledError.
        return _accepted(sent, response, stream_offset=None)


async def send_claimed_turn(
    state: AppState,
    client: Client,
    caller: Caller,
    request: TurnRequest,
    claim: Claim,
    *,
    response: Response,
    stack: AsyncExitStack | None = None,
) -> ChatResponse | ChatAccepted | EventSourceResponse:
    """`send_turn` under an `Idempotency-Key`: with the claim's ids, its answer kept for a retry."""
    request = claimed(request, claim)
    answer = await send_turn(state, client, caller, request, response=response, stack=stack)
    return await claim.finish(answer, response, final=final_answer(answer, mode=request.mode))


def claimed(request: TurnRequest, claim: Claim) -> TurnRequest:
    """The request with the ids its `Idempotency-Key` claim holds (a retry's are the first's)."""
    return replace(
        request,
        turn_id=claim.ids["turn_id"],
        new_session_id=claim.ids["session_id"],
        retried=claim.replayed,
    )


def check_response_schema(schema: dict[str, Any], field: str = "response_schema") -> None:
    """Refuse a response schema that is not a valid JSON Schema: 422 naming `field` and where."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        path = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise Problem(
            422,
            f"{field} is not a valid JSON Schema at {path}: {err.message}",
            type_="invalid-request",
        ) from None


async def _target(
    state: AppState, client: Client, caller: Caller, request: TurnRequest
) -> tuple[SessionHandle, SentTurn]:
    turn_id = request.turn_id or uuid.uuid4().hex
    if request.session_id:
        # Looked up for its formation (formations may share a namespace); the workflow
        # checks the caller again when it is sent the message.
        described = await _sessions.describe_session(state, client, caller, request.session_id)
        return described.handle, SentTurn(request.session_id, turn_id, new_session=False)
    session = await _sessions.start_session(
        state,
        client,
        caller,
        agent=_sessions.resolve_agent(state, request.agent),
        user_id=caller.owner_for(request.user_id),
        metadata={},
        session_id=request.new_session_id,
        retried=request.retried,
        seed=request.seed,
    )
    handle = SessionHandle.of(client, caller.tenant, session.id)
    return handle, SentTurn(session.id, turn_id, new_session=True)


def _message(caller: Caller, request: TurnRequest, sent: SentTurn) -> SendMessageInput:
    return SendMessageInput(
        text=request.text,
        response_schema=request.response_schema,
        turn_id=sent.turn_id,
        # A caller bound to a user: the workflow refuses a session that is not theirs.
        user_id=caller.user_id if caller.user_given else None,
    )


async def _send(handle: SessionHandle, message: SendMessageInput) -> SendMessageResult | None:
    """Queue the message; None if an earlier request queued it."""
    assert message.turn_id is not None
    turn_id = message.turn_id

    async def send_once() -> SendMessageResult | None:
        try:
            return await handle.send_message(message, update_id=turn_id)
        except SessionRejected as err:
            if err.type == Rejections.DUPLICATE_TURN:
                return None
            raise

    return await _sessions.session_call(handle, send_once())


async def _chat(state: AppState, handle: SessionHandle, message: SendMessageInput) -> ChatResponse:
    """Queue and wait in one update; a turn an earlier send queued is waited for instead."""
    assert message.turn_id is not None
    turn_id = message.turn_id

    async def chat_once() -> TurnResult | None:
        try:
            return await handle.chat(message, update_id=turn_id)
        except SessionRejected as err:
            if err.type != Rejections.DUPLICATE_TURN:
                raise
        try:
            return await handle.wait_turn(turn_id)
        except SessionRejected as err:
            if err.type != Rejections.UNKNOWN_TURN:
                raise
        return None  # it ended before the session continued as new, and was not carried

    result = await _sessions.session_call(handle, chat_once())
    if result is not None:
        return chat_response(handle.session_id, result)
    stored = await state.store.turn_messages(handle.id, turn_id)
    ended = ended_turn(handle.session_id, turn_id, stored, None)
    return ended or ChatResponse(
        session_id=handle.session_id, turn_id=turn_id, status="failed", error="no answer stored"
    )


def _accepted(sent: SentTurn, response: Response, *, stream_offset: int | None) -> ChatAccepted:
    accepted = ChatAccepted(
        session_id=sent.session_id,
        turn_id=sent.turn_id,
        status="queued",
        url=f"/v1/sessions/{sent.session_id}/turns/{sent.turn_id}",
        stream_offset=stream_offset,
    )
    response.status_code = 202
    response.headers["Location"] = accepted.url
    return accepted


async def follow_turn(
    state: AppState, client: Client, caller: Caller, request: TurnRequest, stack: AsyncExitStack
) -> TurnStream:
    """Send the message like `send_turn`, and follow its turn's events instead of answering.

    For the protocol endpoints (A2A) that relay a turn in their own shapes. The
    subscriptions live as long as `stack`.
    """
    handle, sent = await _target(state, client, caller, request)
    mark_turn(sent.session_id, sent.turn_id)
    return await _follow(state, client, stack, handle, sent, _message(caller, request, sent))


@dataclass(frozen=True)
class TurnStream:
    """A sent turn and its events, from `turn.started` to `turn.completed`/`turn.failed`."""

    handle: SessionHandle
    sent: SentTurn
    events: Outs
    """Ends after the turn ends, when the session closes, or early when the stream fails."""


async def _stream_turn(
    state: AppState,
    client: Client,
    stack: AsyncExitStack,
    handle: SessionHandle,
    sent: SentTurn,
    message: SendMessageInput,
    render: Render,
) -> EventSourceResponse:
    """Send the message, then stream its turn from `turn.started` to `turn.completed`/`failed`."""
    turn = await _follow(state, client, stack, handle, sent, message)
    headers = {
        "X-Session-Id": sent.session_id,
        "X-Turn-Id": sent.turn_id,
        "Location": f"/v1/sessions/{sent.session_id}/turns/{sent.turn_id}",
    }
    return sse_response(state, render(turn.events), headers)


async def _follow(
    state: AppState,
    client: Client,
    stack: AsyncExitStack,
    handle: SessionHandle,
    sent: SentTurn,
    message: SendMessageInput,
) -> TurnStream:
    # Subscribed before sending, so no delta of the turn can come too early to be seen.
    deltas = await open_deltas(state, stack, handle.id)
    # A new session's stream starts at 0: listening before sending saves a
    # round trip before `turn.started` (which the turn's first deltas wait for).
    listener = await open_listener(state, client, stack, handle.id, 0) if sent.new_session else None
    result = await _send(handle, message)
    # A turn an earlier request queued: its events are somewhere in the stream.
    start = 0 if result is None else result.stream_offset
    if listener is None:
        listener = await open_listener(state, client, stack, handle.id, start)
    view = SessionView(start, turn_id=sent.turn_id)
    # `turn.started` came with the answer: the first deltas need not wait for a poll.
    started = result and result.started
    first = [StreamItem(started.offset, started.event)] if started else []
    return TurnStream(handle, sent, session_outs(listener, deltas, view, first))
