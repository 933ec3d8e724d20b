"""Conversation messages: the shape a transcript has in the workflow, the store and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from keel.approvals import DecisionRecord

Role = Literal["user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


COST_DIGITS = 9
"""Costs are kept to a billionth of a dollar, so sums of many calls stay exact enough to
compare and never print as 0.30000000000000004."""


class Usage(BaseModel):
    """Token counts and their cost, summed per step, per turn and per session."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """What the tokens cost at the model's `pricing` (0 for a model without one)."""
    estimated: bool = False
    """Some of the counts are Keel's estimate: the provider sent none for a call."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, COST_DIGITS),
            estimated=self.estimated or other.estimated,
        )


class UsageTotal(BaseModel):
    """The model calls of one group (a session, user, agent or model), summed."""

    key: str
    turns: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    estimated: bool = False
    """Some of the counts are estimates: a provider sent none for some call."""


class Message(BaseModel):
    """One transcript entry, addressed by its position `seq` in the session.

    `seq` is assigned by the workflow, so every retry of an activity writes the
    same row: store writes are idempotent by `(session, seq)`.
    """

    seq: int = Field(ge=0)
    role: Role
    content: str
    turn_id: str
    created_at: datetime
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    """For role `tool`: the id of the call this message answers."""
    name: str | None = None
    """For role `tool`: the tool's name."""
    is_error: bool = False
    """For role `tool`: the tool failed and `content` is its error message."""
    ref: str | None = None
    """Set when the full content lives in the store as a reference: `content` is its glimpse."""
    usage: Usage | None = None
    """For role `assistant`: the tokens of the model call that wrote it (None in older rows);
    for role `tool`: those a delegated specialist spent answering it. So the store alone can
    say what a turn and a session used."""
    approval: DecisionRecord | None = None
    """For role `tool`: the decision the call waited for (who, when, what), if it was gated."""


def final_answer(turn_messages: list[Message]) -> Message | None:
    """A turn's final answer among its messages: the last assistant message with no tool call."""
    return next(
        (m for m in reversed(turn_messages) if m.role == "assistant" and not m.tool_calls), None
    )


def tokens_of(messages: list[Message]) -> Usage:
    """The tokens of the model calls that wrote `messages` (those that record them)."""
    total = Usage()
    for message in messages:
        if message.usage is not None:
            total = total + message.usage
    return total


class Summary(BaseModel):
    """A summary of a session's messages before `upto_seq`, stored so turns reuse it."""

    upto_seq: int = Field(ge=0)
    content: str
    created_at: datetime
