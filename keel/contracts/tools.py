"""The tool activity's contract: one tool call of one turn, and what the model is told back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from keel.approvals import DecisionRecord
from keel.messages import Usage


def call_key(session: str, turn_id: str, step: int | None, call_id: str) -> str:
    """A tool call's name in the session, the same on every retry and replay."""
    if step is None:
        return f"{session}/{turn_id}/{call_id}"
    return f"{session}/{turn_id}/{step}/{call_id}"


class CallToolInput(BaseModel):
    """One tool call of one turn."""

    session: str
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    step: int | None = None
    """The model step that asked for the call (None in calls scheduled by older code)."""

    @property
    def idempotency_key(self) -> str:
        """Stable across retries, unique in the session: tools that write deduplicate on it.

        The step is part of it because a vendor may give calls of different steps
        the same id.
        """
        return call_key(self.session, self.turn_id, self.step, self.call_id)


class CallToolResult(BaseModel):
    """What goes back to the model: the tool's text, or its error."""

    content: str
    is_error: bool = False
    ref: str | None = None
    """Set when the full content was too large for history: `content` is then its glimpse."""
    usage: Usage | None = None
    """Tokens the call spent on models: a delegated specialist's, rolled up into the turn."""
    approval: DecisionRecord | None = None
    """Set by the workflow: the decision the call waited for, kept on its tool message."""


class ValidateArgumentsInput(BaseModel):
    """Arguments a reviewer wants a tool run with."""

    tool: str
    arguments: dict[str, Any]


class ValidateArgumentsResult(BaseModel):
    """Each problem names the argument and the reason; empty when the arguments fit."""

    problems: list[str] = Field(default_factory=list)
