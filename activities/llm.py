"""The LLM activity: one model step, with the transcript read from and written to the store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Literal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._breaker import CircuitBreakers, counts_against
from activities._cache import ResponseCache
from activities._catalog import ToolCatalog
from activities._deltas import streaming
from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from activities._metrics import record_call
from activities._references import DEFAULT_INLINE_MAX_CHARS, expand_references
from activities._structured import STRUCTURED_RETRIES, correction, schema_problems
from activities._tracing import model_span, record_answer
from activities._usage import counted, priced
from activities.memory import BUILTIN_TOOL_SPECS
from activities.providers import ModelRequest, ModelResponse, OnDelta, get_provider
from keel.contracts.llm import (
    CallModelInput,
    CallModelResult,
    SeedTranscriptInput,
    SeedTranscriptResult,
)
from keel.contracts.memory import READ_REFERENCE_TOOL
from keel.deltas import DeltaBus
from keel.logging import get_logger
from keel.messages import Message, ToolCall, Usage
from keel.names import Activities, ActivityErrors
from keel.store import CallUsage, TranscriptStore, counted_for

log = get_logger(__name__)


class LlmActivities:
    """LLM activities bound to this worker's transcript store and tool catalog.

    Args:
        store: The transcript store.
        tools: Schemas of the tools this worker can offer the model.
        deltas: Where streamed text goes; None means models are not streamed.
        inline_max_chars: Referenced content longer than this is shown to the model
            truncated, with the `read_reference` tool to read on.
        cache: The response cache of models with `cache_ttl_s`; None: nothing is cached.
        breakers: The circuit breakers of models with `circuit_breaker`; by default this
            worker's own.
    """

    def __init__(
        self,
        store: TranscriptStore,
        tools: ToolCatalog | None = None,
        *,
        deltas: DeltaBus | None = None,
        inline_max_chars: int = DEFAULT_INLINE_MAX_CHARS,
        cache: ResponseCache | None = None,
        breakers: CircuitBreakers | None = None,
    ) -> None:
        self._store = store
        self._tools = tools or ToolCatalog()
        self._deltas = deltas
        self._inline_max_chars = inline_max_chars
        self._cache = cache
        self._breakers = breakers or CircuitBreakers()

    @activity.defn(name=Activities.CALL_MODEL)
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
                    type=ActivityErrors.PREFIX_MISSING,
                    non_retryable=True,
                )
        if input.owner is not None and (input.upto_seq == 0 or input.reseed):
            await self._store.register_session(input.session, **input.owner.model_dump())
        await self._store.upsert(input.session, input.new_messages)
        messages, cut = await expand_references(
            self._store,
            input.session,
            _buffer(window + input.new_messages, input.buffer_messages),
            self._inline_max_chars,
        )
        tools = [BUILTIN_TOOL_SPECS[n] for n in input.tools if n in BUILTIN_TOOL_SPECS]
        if cut and READ_REFERENCE_TOOL not in input.tools:
            tools.append(BUILTIN_TOOL_SPECS[READ_REFERENCE_TOOL])
        request = ModelRequest(
            model=input.model,
            system_prompt=await self._system_prompt(input, messages),
            messages=messages,
            tools=[*tools, *await self._tools.specs(input.tools), *input.extra_tools],
            response_schema=input.response_schema,
            attempt=activity.info().attempt,
        )
        response = await self._complete(request, input)
        data = None
        if input.response_schema is not None and not response.tool_calls:
            response = await self._until_valid(request, response, input)
            # Parsed here, not in the workflow: workflow code stays free of parsing.
            data = json.loads(response.content)
        usage = priced(request, response.usage or Usage())
        answer = Message(
            seq=input.upto_seq + len(input.new_messages),
            role="assistant",
            content=response.content,
            tool_calls=unique_call_ids(response.tool_calls, input.step),
            turn_id=input.turn_id,
            created_at=datetime.now(UTC),
            usage=usage,
        )
        await self._store.upsert(input.session, [answer])
        await self._record_usage(input, answer)
        return CallModelResult(
            message=answer,
            usage=usage,
            data=data,
            model=input.model_name,
            cached=response.cached,
        )

    async def _record_usage(self, input: CallModelInput, answer: Message) -> None:
        """The call's row in the usage ledger (rewritten by a retry), then its metrics."""
        usage = answer.usage or Usage()
        agent, model = input.agent or "", _model_label(input)
        if input.owner is not None:
            session, turn_id = counted_for(input.session, input.turn_id)
            call = CallUsage(
                call=f"{input.session}/{input.turn_id}/{input.step}",
                session=session,
                turn_id=turn_id,
                tenant=input.owner.tenant,
                user_id=input.owner.user_id,
                agent=agent,
                model=model,
                usage=usage,
                created_at=answer.created_at,
            )
            await self._store.record_usage(call)
        # Last: an attempt that failed before this point counts nothing.
        record_call(agent, model, usage)

    @activity.defn(name=Activities.SEED_TRANSCRIPT)
    async def seed_transcript(self, input: SeedTranscriptInput) -> SeedTranscriptResult:
        """Write messages a store lost (or never had), one chunk per call; idempotent by seq."""
        with activity_log_context():
            if input.owner is not None:
                await self._store.register_session(input.session, **input.owner.model_dump())
            await self._store.upsert(input.session, input.messages)
            return SeedTranscriptResult(written=len(input.messages))

    async def _system_prompt(self, input: CallModelInput, messages: list[Message]) -> str | None:
        """The agent's prompt, then what the model should know beyond the window."""
        parts = [input.system_prompt] if input.system_prompt else []
        if messages and messages[0].seq > 0:
            summary = await self._store.latest_summary(input.session)
            if summary is not None:
                parts.append(f"Summary of the earlier conversation:\n{summary.content}")
        if input.memories:
            recalled = "\n".join(f"- {text}" for text in input.memories)
            parts.append(
                f"What you remember about this user from earlier conversations:\n{recalled}"
            )
        return "\n\n".join(parts) or None

    async def _complete(self, request: ModelRequest, input: CallModelInput) -> ModelResponse:
        started = time.perf_counter()
        # A structured answer may be asked for again, and a client would see each
        # attempt's text under one step: stream only free-form answers.
        deltas = self._deltas if input.response_schema is None else None
        async with streaming(
            deltas,
            session_key=input.session,
            turn_id=input.turn_id,
            step=input.step,
            stream_offset=input.stream_offset,
        ) as on_delta:
            with model_span(request.model, session=input.session, turn_id=input.turn_id) as span:
                tenant = input.owner.tenant if input.owner else ""
                cached = await self._cache.get(request, tenant=tenant) if self._cache else None
                if cached is not None:
                    # Told as any answer is: its text streams, its events follow.
                    if on_delta is not None:
                        await on_delta(cached.content)
                    response = cached
                else:
                    response = await self._provider_call(request, input, on_delta)
                    # Counted here, once per request: the estimate reads the whole prompt.
                    response = counted(request, response)
                    if self._cache is not None:
                        await self._cache.put(request, response, tenant=tenant)
                record_answer(span, response)
        log.info(
            "model answered",
            provider=request.model.provider,
            model=request.model.model,
            step=input.step,
            tool_calls=len(response.tool_calls),
            cached=response.cached,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    async def _provider_call(
        self, request: ModelRequest, input: CallModelInput, on_delta: OnDelta | None
    ) -> ModelResponse:
        """The provider's answer, through the model's circuit breaker when it has one."""
        provider = get_provider(request.model)
        config = request.model.circuit_breaker
        if config is None:
            return await with_heartbeat(provider.complete(request, on_delta=on_delta))
        name = input.model_name or f"{request.model.provider}/{request.model.model}"
        breaker = self._breakers.get(name, config)
        # Raises `CircuitOpen` while the circuit is open: no request reaches the provider.
        probe = breaker.admit(name)
        try:
            response = await with_heartbeat(provider.complete(request, on_delta=on_delta))
        except BaseException as err:
            if counts_against(err):
                breaker.failed()
            elif probe:
                breaker.released()
            raise
        breaker.succeeded()
        return response

    async def _until_valid(
        self, request: ModelRequest, response: ModelResponse, input: CallModelInput
    ) -> ModelResponse:
        """Ask again, with the validation errors, until the answer fits the schema.

        The corrections are not stored: the transcript keeps only the final answer.
        """
        schema = input.response_schema or {}
        usage = response.usage or Usage()
        for _ in range(STRUCTURED_RETRIES):
            problems = schema_problems(response.content, schema)
            if not problems:
                return response.model_copy(update={"usage": usage})
            retry = [
                _transient("assistant", response.content, input),
                _transient("user", correction(problems), input),
            ]
            request = request.model_copy(update={"messages": [*request.messages, *retry]})
            response = await self._complete(request, input)
            usage = usage + (response.usage or Usage())
        problems = schema_problems(response.content, schema)
        if problems:
            raise ApplicationError(
                "the model's answer does not match the response schema: " + "; ".join(problems),
                type=ActivityErrors.INVALID_STRUCTURED_OUTPUT,
                non_retryable=True,
            )
        return response.model_copy(update={"usage": usage})


def _model_label(input: CallModelInput) -> str:
    """The model as metrics and usage name it: the vendor's model id, else the provider."""
    return input.model.model or input.model.provider


def _transient(role: Literal["user", "assistant"], content: str, input: CallModelInput) -> Message:
    """A message shown to the model once, never stored."""
    seq = input.upto_seq + len(input.new_messages)
    return Message(
        seq=seq, role=role, content=content, turn_id=input.turn_id, created_at=datetime.now(UTC)
    )


def unique_call_ids(calls: list[ToolCall], step: int) -> list[ToolCall]:
    """`calls` with an id each that no other call of the step has.

    Some servers send no id, or the same one for every call; the id names the
    call's result in the transcript, so a missing or repeated one is replaced.
    """
    seen: set[str] = set()
    unique: list[ToolCall] = []
    for index, call in enumerate(calls):
        if not call.id or call.id in seen:
            call = call.model_copy(update={"id": f"call_{step}_{index}"})
        seen.add(call.id)
        unique.append(call)
    return unique


def _buffer(messages: list[Message], limit: int) -> list[Message]:
    """The last `limit` messages, without leading tool results.

    A window that opened on a tool result would orphan it from the assistant
    call it answers, which vendors reject.
    """
    recent = messages[-limit:]
    start = next((i for i, m in enumerate(recent) if m.role != "tool"), len(recent))
    return recent[start:]
