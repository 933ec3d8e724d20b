"""The OpenAI-compatible chat: a request's messages as a Keel turn, the turn's answer as a
`chat.completion`, and its events as `chat.completion.chunk` frames."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sse_starlette import ServerSentEvent

from api._event_stream import Outs, Render
from api._limits import check_message
from api._openai_errors import error_body
from api._seed import SessionSeed
from api._turns import check_response_schema
from api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    Choice,
    ChunkChoice,
    ChunkDelta,
    JsonObjectFormat,
    ResponseFormat,
    TextFormat,
    usage_of,
)
from api.problems import Problem
from api.schemas import ChatResponse
from keel.messages import Message

DONE = "[DONE]"
"""The data of a stream's last frame, as OpenAI ends its streams."""
SESSION_HEADER = "X-Keel-Session-Id"
"""Names the session of an answer, and the session a request continues."""


@dataclass(frozen=True)
class OpenAITurn:
    """What a chat completion request asks of a session."""

    text: str
    """The last user message: the new turn."""
    seed: SessionSeed
    """The messages before it, for a new session."""
    response_schema: dict[str, Any] | None


def openai_turn(body: ChatCompletionRequest, *limits: int) -> OpenAITurn:
    """The turn a request asks for: its last user message with text, after the ones before.

    Args:
        body: the request.
        limits: the message limits (as `check_message` takes them): each message's
            text is held to them, as the turn's own message is.
    """
    messages = body.messages
    last = max(i for i, m in enumerate(messages) if m.is_turn)
    for message in messages:
        check_message(message.text, *limits)
    instructions = [m.text for m in messages if m.role in ("system", "developer")]
    seed = SessionSeed(
        messages=_transcript(messages[:last]),
        instructions="\n\n".join(instructions) or None,
    )
    return OpenAITurn(messages[last].text, seed, _response_schema(body.response_format))


def completion_id(turn_id: str) -> str:
    """The `id` of a turn's completion and of its chunks."""
    return f"chatcmpl-{turn_id}"


def completion_of(answer: ChatResponse, model: str) -> ChatCompletion:
    """A turn that ended, as a completion; one that ended without an answer as an error.

    Raises:
        Problem: 409 `turn-failed` (the model or a step failed), 409 `turn-cancelled`: the
            turn ran, so a retry would be a new turn (and 5xx would invite one).
    """
    members = {"session_id": answer.session_id, "turn_id": answer.turn_id}
    headers = {SESSION_HEADER: answer.session_id}
    if answer.status == "failed":
        raise Problem(
            409, f"the turn failed: {answer.error}", type_="turn-failed", headers=headers, **members
        )
    if answer.status != "completed" or answer.message is None:
        raise Problem(
            409,
            "the turn was cancelled",
            type_="turn-cancelled",
            headers=headers,
            **members,
        )
    return ChatCompletion(
        id=completion_id(answer.turn_id),
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=answer.message.content))],
        usage=usage_of(answer.usage.prompt_tokens, answer.usage.completion_tokens),
    )


def chunk_frames(turn_id: str, model: str, *, include_usage: bool) -> Render:
    """The frames of a streamed turn: a chunk with the role, one per piece of text, the
    last with `finish_reason`, the usage if asked for, then `[DONE]`.

    The text sent is the answer's: the deltas as they come, completed from
    `message.completed` (all of it where no delta came: no delta channel, a
    structured answer). Text of a step that ended in tool calls has been sent by
    then, as OpenAI streams text before its own tool calls. A turn that fails ends
    the stream with an `{"error": …}` frame, which OpenAI's clients raise.
    """
    created = int(time.time())

    def chunk(delta: ChunkDelta, *, finish: bool = False) -> ServerSentEvent:
        choice = ChunkChoice(delta=delta, finish_reason="stop" if finish else None)
        frame = ChatCompletionChunk(
            id=completion_id(turn_id), created=created, model=model, choices=[choice]
        )
        return ServerSentEvent(data=frame.model_dump_json())

    def usage(data: dict[str, Any]) -> ServerSentEvent:
        tokens = data.get("usage") or {}
        frame = ChatCompletionChunk(
            id=completion_id(turn_id),
            created=created,
            model=model,
            choices=[],
            usage=usage_of(tokens.get("prompt_tokens", 0), tokens.get("completion_tokens", 0)),
        )
        return ServerSentEvent(data=frame.model_dump_json())

    def error(status: int, detail: str, type_: str) -> ServerSentEvent:
        extra = {"turn_id": turn_id}
        return ServerSentEvent(
            data=json.dumps(error_body(status, detail, type_=type_, extra=extra))
        )

    async def render(outs: Outs) -> AsyncIterator[ServerSentEvent]:
        step: tuple[object, object] | None = None
        sent = ""
        """The text sent of the current model call (step and attempt)."""
        async with aclosing(outs):
            yield chunk(ChunkDelta(role="assistant", content=""))
            async for out in outs:
                event, data = out.event, out.event.data
                if event.type == "message.delta":
                    if (data.get("step"), data.get("attempt")) != step:
                        step, sent = (data.get("step"), data.get("attempt")), ""
                    piece = str(data.get("text", ""))
                    sent += piece
                    if piece:
                        yield chunk(ChunkDelta(content=piece))
                elif event.type == "tool.call":
                    sent = ""  # that call's text was not the answer
                elif event.type == "message.completed":
                    content = str(data.get("content", ""))
                    if content.startswith(sent) and len(content) > len(sent):
                        yield chunk(ChunkDelta(content=content[len(sent) :]))
                elif event.type == "turn.completed":
                    yield chunk(ChunkDelta(), finish=True)
                    if include_usage:
                        yield usage(data)
                    yield ServerSentEvent(data=DONE)
                    return
                elif event.type == "turn.failed":
                    yield error(409, f"the turn failed: {data.get('error')}", "turn-failed")
                    return
            yield error(503, "the event stream ended before the turn did", "stream-interrupted")

    return render


def _transcript(history: list[ChatMessageIn]) -> list[Message]:
    """The user and assistant messages of a history that have text, as a new session's first
    messages."""
    transcript: list[Message] = []
    exchange = 0
    now = datetime.now(UTC)
    for message in history:
        if message.role not in ("user", "assistant") or not message.text.strip():
            continue
        exchange += message.role == "user"
        transcript.append(
            Message(
                seq=len(transcript),
                role="user" if message.role == "user" else "assistant",
                content=message.text,
                # Pseudo turns, one per user message, so the transcript reads as turns.
                turn_id=f"seed-{exchange}",
                created_at=now,
            )
        )
    return transcript


def _response_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The JSON Schema the answer must fit, from `response_format`."""
    if response_format is None or isinstance(response_format, TextFormat):
        return None
    if isinstance(response_format, JsonObjectFormat):
        return {"type": "object"}
    schema = response_format.json_schema.schema_
    check_response_schema(schema, "response_format.json_schema.schema")
    return schema
