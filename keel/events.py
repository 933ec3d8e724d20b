"""Step events: the durable, offset-addressed record of what a session did."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EVENTS_TOPIC = "events"
"""The Workflow Streams topic that carries step events."""

EventType = Literal[
    "turn.started",
    "agent.selected",
    "message.delta",
    "message.completed",
    "tool.call",
    "approval.requested",
    "approval.decided",
    "tool.result",
    "memory.recalled",
    "memory.stored",
    "handoff",
    "turn.completed",
    "turn.failed",
    "session.closed",
]


class SessionEvent(BaseModel):
    """One step of a session. On the wire `data` is flattened into the event object."""

    type: EventType
    session_id: str
    turn_id: str | None = None
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The JSON object clients see: `{type, session_id, turn_id, ts, …payload}`."""
        return {
            "type": self.type,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "ts": self.ts.isoformat(),
            **self.data,
        }
