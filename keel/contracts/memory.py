"""The memory activities' contracts: recall, write, references, summaries and facts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from keel.formation import ModelConfig

MemoryKind = Literal["fact", "exchange"]
"""`fact`: something lasting about the user; `exchange`: a past turn, question and answer."""

REMEMBER_TOOL = "remember"
READ_REFERENCE_TOOL = "read_reference"
"""Built-in tools the workflow runs itself, through the memory activities."""


class MemoryScope(BaseModel):
    """Whose memories: recall and writes never cross a tenant, a user or a formation."""

    tenant: str
    user_id: str
    formation: str


class Recalled(BaseModel):
    """A memory recalled for a turn."""

    id: str
    kind: MemoryKind
    text: str
    score: float


class RecallInput(BaseModel):
    """Memories of `scope` like `query` (the user's message)."""

    scope: MemoryScope
    session: str
    query: str
    top_k: int = 5


class RecallResult(BaseModel):
    """Best first, cut to what a turn may carry in all."""

    memories: list[Recalled] = Field(default_factory=list)


class MemoryDraft(BaseModel):
    """A memory to write; `key` makes its id unique within the turn."""

    key: str
    kind: MemoryKind
    text: str


class WriteMemoriesInput(BaseModel):
    """Memories written by one turn of one session."""

    scope: MemoryScope
    session: str
    turn_id: str
    memories: list[MemoryDraft]


class WriteMemoriesResult(BaseModel):
    """The ids written, in order."""

    ids: list[str]


class ReadReferenceInput(BaseModel):
    """A `read_reference` tool call."""

    session: str
    ref: str
    offset: int = 0
    length: int = 8000


class ReadReferenceResult(BaseModel):
    """The part read, or why nothing could be."""

    content: str
    is_error: bool = False


class SummarizeInput(BaseModel):
    """Fold the messages `from_seq <= seq < upto_seq` into the session's latest summary."""

    session: str
    turn_id: str
    from_seq: int
    upto_seq: int
    model: ModelConfig


class SummarizeResult(BaseModel):
    """The seq the stored summary now covers up to (exclusive)."""

    upto_seq: int
    chars: int


class ExtractFactsInput(BaseModel):
    """One finished turn: the user's message and the answer."""

    user_text: str
    answer: str
    model: ModelConfig


class ExtractFactsResult(BaseModel):
    """At most a few facts, each one sentence."""

    facts: list[str] = Field(default_factory=list)
