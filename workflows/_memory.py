"""The memory steps of a session's turns: summaries, recall, writes and the built-in tools.

Deterministic workflow code: every piece of I/O is an activity, and a memory
activity that fails is logged and skipped rather than failing the turn.
"""

from __future__ import annotations

from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import _options
from workflows._model import model_task_queue
from workflows._patches import MEMORY_PATCH, patched
from workflows._step import Publish, Step

with workflow.unsafe.imports_passed_through():
    from keel.contracts.memory import (
        READ_REFERENCE_TOOL,
        REMEMBER_TOOL,
        ExtractFactsInput,
        ExtractFactsResult,
        MemoryDraft,
        MemoryScope,
        ReadReferenceInput,
        ReadReferenceResult,
        RecallInput,
        RecallResult,
        SummarizeInput,
        SummarizeResult,
        WriteMemoriesInput,
        WriteMemoriesResult,
    )
    from keel.contracts.tools import CallToolResult
    from keel.events import MemoryItem, MemoryRecalled, MemoryStored
    from keel.messages import ToolCall
    from keel.names import Activities
    from keel.session import StartSessionInput

R = TypeVar("R")
EXCHANGE_CHARS = 450
"""Each side of an exchange memory: enough to recall what was said, small enough to embed well."""


class SessionMemory:
    """What a session's workflow asks of memory, one call per step of a turn.

    Args:
        input: the session's input (memory options, owner, model, queues).
        summary_upto: the seq the stored summary covers up to (carried across runs).
        publish: the workflow's event publisher.
    """

    def __init__(self, input: StartSessionInput, summary_upto: int, publish: Publish) -> None:
        self._input = input
        self._options = input.memory
        self._publish = publish
        self.summary_upto = summary_upto
        self.recalled: list[str] = []
        """Recalled texts of the current turn, for each of its model calls."""
        self.scope = MemoryScope(
            tenant=input.tenant, user_id=input.user_id, formation=input.memory.formation
        )

    @property
    def tools(self) -> list[str]:
        """Built-in tools the model is offered (`read_reference` is added when needed)."""
        return [REMEMBER_TOOL] if self._options.remember_tool else []

    def handles(self, tool: str) -> bool:
        """Whether a tool call is a built-in one, run here rather than by the tool activity."""
        return tool == READ_REFERENCE_TOOL or tool in self.tools

    async def before_turn(self, turn_id: str, text: str, next_seq: int) -> None:
        """Summarise what is leaving the window (when due), then recall memories."""
        self.recalled = []
        if not patched(MEMORY_PATCH):
            return
        await self._summarize_if_due(turn_id, next_seq)
        if not self._options.vector:
            return
        result = await self._activity(
            Activities.RECALL,
            RecallInput(
                scope=self.scope,
                session=self._session,
                query=text[:2000],
                top_k=self._options.top_k,
            ),
            RecallResult,
            "recall memories",
        )
        if result is None:
            return
        self.recalled = [m.text for m in result.memories]
        self._publish(
            MemoryRecalled(memories=[MemoryItem(**m.model_dump()) for m in result.memories]),
            turn_id,
        )

    async def after_turn(self, turn_id: str, text: str, answer: str) -> None:
        """Store the exchange (and facts drawn from it, when enabled) as long-term memory."""
        if not (self._options.vector and patched(MEMORY_PATCH)):
            return
        drafts = [
            MemoryDraft(
                key="exchange",
                kind="exchange",
                text=f"User: {text[:EXCHANGE_CHARS]}\nAssistant: {answer[:EXCHANGE_CHARS]}",
            )
        ]
        if self._options.extract_facts:
            model = self._input.agent.model
            extracted = await self._activity(
                Activities.EXTRACT_FACTS,
                ExtractFactsInput(user_text=text[:2000], answer=answer[:2000], model=model),
                ExtractFactsResult,
                "extract facts",
                model_call=True,
            )
            for i, fact in enumerate(extracted.facts if extracted else []):
                drafts.append(MemoryDraft(key=f"fact-{i}", kind="fact", text=fact))
        await self._write(turn_id, drafts)

    async def call_builtin(self, step: Step, call: ToolCall) -> CallToolResult:
        """Run a built-in tool call; failures are tool errors, as for any tool."""
        if call.name == REMEMBER_TOOL:
            fact = str(call.arguments.get("fact") or "").strip()
            if not fact:
                return CallToolResult(content="remember needs a non-empty 'fact'", is_error=True)
            # Keyed by step and call: a vendor may repeat a call id in later steps.
            draft = MemoryDraft(key=f"{step.number}/{call.id}", kind="fact", text=fact)
            ids = await self._write(step.turn_id, [draft])
            if ids is None:
                return CallToolResult(content="the fact could not be stored", is_error=True)
            return CallToolResult(content=f"Remembered: {fact}")
        arguments = call.arguments
        read = await self._activity(
            Activities.READ_REFERENCE,
            ReadReferenceInput(
                session=self._session,
                ref=str(arguments.get("ref", "")),
                offset=_int(arguments.get("offset"), 0),
                length=_int(arguments.get("length"), 8000),
            ),
            ReadReferenceResult,
            "read reference",
        )
        if read is None:
            return CallToolResult(content="the reference could not be read", is_error=True)
        return CallToolResult(content=read.content, is_error=read.is_error)

    # -- helpers ------------------------------------------------------------

    @property
    def _session(self) -> str:
        return workflow.info().workflow_id

    async def _write(self, turn_id: str, drafts: list[MemoryDraft]) -> list[str] | None:
        written = await self._activity(
            Activities.WRITE_MEMORIES,
            WriteMemoriesInput(
                scope=self.scope, session=self._session, turn_id=turn_id, memories=drafts
            ),
            WriteMemoriesResult,
            "store memories",
        )
        if written is None:
            return None
        self._publish(
            MemoryStored(
                memories=[
                    MemoryItem(id=i, kind=d.kind) for i, d in zip(written.ids, drafts, strict=True)
                ]
            ),
            turn_id,
        )
        return written.ids

    async def _summarize_if_due(self, turn_id: str, next_seq: int) -> None:
        """Fold messages leaving the model's window into the summary, a stretch at a time.

        The model sees the last `buffer` messages; the summary must reach past
        the window's start, or messages between them would be seen by neither.
        It is renewed only when the window is about to pass it, and then made
        to reach half a buffer further, so it is reused for many turns.
        """
        buffer = self._input.agent.buffer_messages
        window_start = next_seq - buffer
        slack = max(1, min(4, buffer // 4))
        if not self._options.summaries or window_start <= 0:
            return
        if window_start + slack <= self.summary_upto:
            return
        upto = min(next_seq, window_start + max(2 * slack, buffer // 2))
        done = await self._activity(
            Activities.SUMMARIZE,
            SummarizeInput(
                session=self._session,
                turn_id=turn_id,
                from_seq=self.summary_upto,
                upto_seq=upto,
                model=self._input.agent.model,
            ),
            SummarizeResult,
            f"summarise messages before {upto}",
            model_call=True,
        )
        if done is not None:
            self.summary_upto = done.upto_seq

    async def _activity(
        self,
        name: str,
        arg: object,
        result_type: type[R],
        summary: str,
        *,
        model_call: bool = False,
    ) -> R | None:
        """Run a memory activity; None (and a warning) if it fails for good."""
        model = self._input.agent.model
        try:
            return await _options.run_activity(
                name,
                arg,
                result_type,
                _options.memory_model_call(model) if model_call else _options.MEMORY,
                task_queue=model_task_queue(model)
                if model_call
                else self._input.activities_task_queue,
                summary=summary,
            )
        except ActivityError as err:
            # Memory makes answers better; its outage must not stop the conversation.
            workflow.logger.warning(f"memory step {name} failed; going on without it: {err.cause}")
            return None


def _int(value: object, default: int) -> int:
    """A model's integer argument (sometimes sent as a string), or `default`."""
    try:
        return int(str(value))
    except ValueError:
        return default
