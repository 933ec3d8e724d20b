"""The LLM activity: one model step, with the transcript read from and written to the store."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._deltas import streaming
from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from activities.providers import ModelRequest, ToolSpec, get_provider
from keel.deltas import DeltaBus
from keel.formation import ModelConfig
from keel.logging import get_logger
from keel.messages import Message, Usage
from keel.store import TranscriptStore

CALL_MODEL = "keel.llm.call_model"
PREFIX_MISSING = "TranscriptPrefixMissing"
log = get_logger(__name__)


class CallModelInput(BaseModel):
    """One model step. Carries only what the store may not have yet.

    Passing the whole conversation would make every step's history event grow
    with the conversation (quadratic history); instead the activity loads the
    prefix `seq < upto_seq` from the store.
    """

    session: str
    """The session's workflow id: the transcript store's key."""
    turn_id: str
    step: int
    upto_seq: int
    """Seq of the first message in `new_messages`; the store must hold the ones before."""
    new_messages: list[Message] = Field(default_factory=list)
    reseed: bool = False
    """Accept whatever prefix the store has (the workflow is re-seeding a lost store)."""
    model: ModelConfig
    system_prompt: str | None = None
    tools: list[str] = Field(default_factory=list)
    buffer_messages: int = 50
    stream_offset: int | None = None
    """The session's stream offset when the call was scheduled; its token deltas carry it."""


class CallModelResult(BaseModel):
    """The assistant message (already stored) and the step's token usage."""

    message: Message
    usage: Usage


class ToolCatalog:
    """Schemas of the tools a worker can run; empty until tools are configured."""

    def __init__(self, specs: dict[str, ToolSpec] | None = None) -> None:
        self._specs = dict(specs or {})

    def specs(self, names: list[str]) -> list[ToolSpec]:
        """The known specs among `names`, in order."""
        return [self._specs[name] for name in names if name in self._specs]


class LlmActivities:
    """LLM activities bound to this worker's transcript store and tool catalog.

    Args:
        store: The transcript store.
        tools: Schemas of the tools this worker can offer the model.
        deltas: Where streamed text goes; None means models are not streamed.
    """

    def __init__(
        self,
        store: TranscriptStore,
        tools: ToolCatalog | None = None,
        *,
        deltas: DeltaBus | None = None,
    ) -> None:
        self._store = store
        self._tools = tools or ToolCatalog()
        self._deltas = deltas

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, input: CallModelInput) -> CallModelResult:
        """Load the recent transcript, add the new messages, call the model, store its answer.

        Raises:
            ApplicationError: `TranscriptPrefixMissing` (non-retryable) when the
                store does not hold the messages before `upto_seq`; provider
                errors as mapped by the providers.
        """
        with activity_log_context():
            return await self._call_model(input)

    async def _call_model(self, input: CallModelInput) -> CallModelResult:
        window: list[Message] = []
        if input.upto_seq > 0:
            window = await self._store.window(
                input.session, before_seq=input.upto_seq, limit=input.buffer_messages
            )
            if not input.reseed and (not window or window[-1].seq != input.upto_seq - 1):
                raise ApplicationError(
                    f"transcript store lacks messages before seq {input.upto_seq}",
                    type=PREFIX_MISSING,
                    non_retryable=True,
                )
        await self._store.upsert(input.session, input.new_messages)
        messages = _buffer(window + input.new_messages, input.buffer_messages)
        request = ModelRequest(
            model=input.model,
            system_prompt=input.system_prompt,
            messages=messages,
            tools=self._tools.specs(input.tools),
            attempt=activity.info().attempt,
        )
        started = time.perf_counter()
        async with streaming(
            self._deltas,
            session_key=input.session,
            turn_id=input.turn_id,
            step=input.step,
            stream_offset=input.stream_offset,
        ) as on_delta:
            response = await with_heartbeat(
                get_provider(input.model).complete(request, on_delta=on_delta)
            )
        log.info(
            "model answered",
            provider=input.model.provider,
            model=input.model.model,
            step=input.step,
            tool_calls=len(response.tool_calls),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        answer = Message(
            seq=input.upto_seq + len(input.new_messages),
            role="assistant",
            content=response.content,
            tool_calls=response.tool_calls,
            turn_id=input.turn_id,
            created_at=datetime.now(UTC),
        )
        await self._store.upsert(input.session, [answer])
        return CallModelResult(message=answer, usage=response.usage)


def _buffer(messages: list[Message], limit: int) -> list[Message]:
    """The last `limit` messages, without leading tool results.

    A window that opened on a tool result would orphan it from the assistant
    call it answers, which vendors reject.
    """
    recent = messages[-limit:]
    start = next((i for i, m in enumerate(recent) if m.role != "tool"), len(recent))
    return recent[start:]
