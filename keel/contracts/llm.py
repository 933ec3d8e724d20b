"""The LLM activity's contract: one model step, and the tools a model may be offered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from keel.contracts.memory import MemoryScope
from keel.formation import ModelConfig
from keel.messages import Message, Usage


class ToolSpec(BaseModel):
    """A tool as the model sees it. `name` may hold dots (`time.get_current_time`)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


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
    model_name: str | None = None
    """`model`'s name in the formation: its circuit breaker's key, and the answer's `model`."""
    system_prompt: str | None = None
    tools: list[str] = Field(default_factory=list)
    """Names of tools the worker knows; their schemas come from its catalog."""
    extra_tools: list[ToolSpec] = Field(default_factory=list)
    """Tools the workflow defines itself (delegation to other agents)."""
    buffer_messages: int = 50
    response_schema: dict[str, Any] | None = None
    """JSON Schema the final answer must satisfy."""
    owner: MemoryScope | None = None
    """Whose session this is; recorded with the first message, so it can be forgotten."""
    memories: list[str] = Field(default_factory=list)
    """Recalled long-term memories for this turn (bounded), shown to the model as context."""
    stream_offset: int | None = None
    """The session's stream offset when the call was scheduled; its token deltas carry it."""
    agent: str | None = None
    """The agent whose step this is, for usage by agent (None in calls of older code)."""


class CallModelResult(BaseModel):
    """The assistant message (already stored) and the step's token usage, priced."""

    message: Message
    usage: Usage
    data: Any = None
    """With a response schema: the final answer parsed, and valid against the schema."""
    model: str | None = None
    """The name of the model that answered (a fallback's when the first model failed)."""
    cached: bool = False
    """The answer came from the response cache (`cache_ttl_s`), not from the provider."""


class SeedTranscriptInput(BaseModel):
    """Messages of a session to write to a store that lost them (one chunk of them)."""

    session: str
    messages: list[Message]
    owner: MemoryScope | None = None


class SeedTranscriptResult(BaseModel):
    """How many messages were written."""

    written: int
