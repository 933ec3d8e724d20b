"""Memory activities: recall and write long-term memories, and the built-in memory tools."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._logging import activity_log_context
from activities._references import read_slice
from keel.contracts.llm import ToolSpec
from keel.contracts.memory import (
    READ_REFERENCE_TOOL,
    REMEMBER_TOOL,
    ReadReferenceInput,
    ReadReferenceResult,
    Recalled,
    RecallInput,
    RecallResult,
    WriteMemoriesInput,
    WriteMemoriesResult,
)
from keel.logging import get_logger
from keel.memory import NewMemory, VectorMemory, memory_id
from keel.names import Activities
from keel.store import TranscriptStore

BUILTIN_TOOL_SPECS: dict[str, ToolSpec] = {
    REMEMBER_TOOL: ToolSpec(
        name=REMEMBER_TOOL,
        description=(
            "Store a lasting fact about the user (a preference, a detail, a plan) so that"
            " you will know it in their later conversations. One short sentence per call."
        ),
        parameters={
            "type": "object",
            "properties": {"fact": {"type": "string", "description": "The fact, in one sentence."}},
            "required": ["fact"],
        },
    ),
    READ_REFERENCE_TOOL: ToolSpec(
        name=READ_REFERENCE_TOOL,
        description="Read part of a large tool result that was cut, by its reference id.",
        parameters={
            "type": "object",
            "properties": {
                "ref": {"type": "string"},
                "offset": {"type": "integer", "minimum": 0},
                "length": {"type": "integer", "minimum": 1, "maximum": 8000},
            },
            "required": ["ref", "offset"],
        },
    ),
}
RECALL_MAX_CHARS = 2000
"""Recalled text given to the model per turn, in all: it travels in history on every step."""
MEMORY_MAX_CHARS = 1000
"""A stored memory's text at most; longer ones are cut."""
log = get_logger(__name__)


class MemoryActivities:
    """Memory activities bound to this worker's stores.

    Args:
        store: the transcript store (for references).
        vector: the vector memory; None when the formation disables it.
    """

    def __init__(self, store: TranscriptStore, vector: VectorMemory | None) -> None:
        self._store = store
        self._vector = vector

    def _vector_memory(self) -> VectorMemory:
        if self._vector is None:
            raise ApplicationError(
                "vector memory is not enabled on this worker",
                type="VectorMemoryDisabled",
                non_retryable=True,
            )
        return self._vector

    @activity.defn(name=Activities.RECALL)
    async def recall(self, input: RecallInput) -> RecallResult:
        """The user's memories most like the message, this session's own exchanges left out."""
        with activity_log_context():
            found = await self._vector_memory().recall(
                input.scope, input.query, top_k=input.top_k, exclude_session=input.session
            )
            memories: list[Recalled] = []
            room = RECALL_MAX_CHARS
            for item in found:
                if room <= 0:
                    break
                text = item.text[:room]
                room -= len(text)
                memories.append(
                    Recalled(id=item.id, kind=item.kind, text=text, score=item.score or 0.0)
                )
            log.info("memories recalled", count=len(memories))
            return RecallResult(memories=memories)

    @activity.defn(name=Activities.WRITE_MEMORIES)
    async def write(self, input: WriteMemoriesInput) -> WriteMemoriesResult:
        """Write memories; ids come from (session, turn, key), so a retry overwrites, never adds."""
        with activity_log_context():
            memories = [
                NewMemory(
                    id=memory_id(input.session, input.turn_id, draft.key),
                    kind=draft.kind,
                    text=draft.text[:MEMORY_MAX_CHARS],
                    session=input.session,
                    turn_id=input.turn_id,
                )
                for draft in input.memories
            ]
            await self._vector_memory().write(input.scope, memories)
            log.info("memories written", count=len(memories))
            return WriteMemoriesResult(ids=[m.id for m in memories])

    @activity.defn(name=Activities.READ_REFERENCE)
    async def read_reference(self, input: ReadReferenceInput) -> ReadReferenceResult:
        """Part of a reference of this session (another session's refs are not found)."""
        content = await self._store.get_reference(input.session, input.ref)
        if content is None:
            return ReadReferenceResult(content=f"no reference {input.ref!r}", is_error=True)
        return ReadReferenceResult(
            content=read_slice(content, input.ref, max(0, input.offset), input.length)
        )
