"""Step events: the vocabulary of what a session did, with a typed payload per event type."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from keel.messages import Usage

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
    "plan.proposed",
    "plan.decided",
    "plan.step.started",
    "plan.step.completed",
    "plan.completed",
    "turn.completed",
    "turn.failed",
    "turn.cancelled",
    "session.closed",
]
TURN_END_TYPES: frozenset[str] = frozenset({"turn.completed", "turn.failed", "turn.cancelled"})
"""Nothing of a turn follows one of these."""


class EventPayload(BaseModel):
    """The typed part of an event; each subclass is the payload of one event type."""

    TYPE: ClassVar[EventType]


class TurnStarted(EventPayload):
    """A turn began: always the first event of a turn."""

    TYPE = "turn.started"
    agent: str
    run_id: str | None = None
    """The workflow run that ran the turn (None in events of older builds): with the
    session's `workflow_id`, its Temporal UI link
    `{temporal_ui}/namespaces/{ns}/workflows/{workflow_id}/{run_id}/history`."""


class AgentSelected(EventPayload):
    """A coordinator chose the agent that answers."""

    TYPE = "agent.selected"
    agent: str
    reason: str | None = None


class MessageDelta(EventPayload):
    """A piece of the model's text as it streams. Side channel only: never durable."""

    TYPE = "message.delta"
    text: str
    step: int
    """The model call of the turn (1, 2, … as tools are called)."""
    attempt: int
    """The activity attempt: a higher one means the call restarted; drop the partial text."""
    index: int
    """Position of this piece within (step, attempt), from 0."""


class MessageCompleted(EventPayload):
    """The turn's final answer, whole."""

    TYPE = "message.completed"
    seq: int
    role: Literal["assistant"] = "assistant"
    content: str


class ToolCallEvent(EventPayload):
    """The model asked for a tool."""

    TYPE = "tool.call"
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ApprovalRequested(EventPayload):
    """A tool call waits for a human decision (`POST …/approvals/{approval_id}`)."""

    TYPE = "approval.requested"
    approval_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime | None = None


class ApprovalDecided(EventPayload):
    """A pending approval was decided, by a person or by its timeout."""

    TYPE = "approval.decided"
    approval_id: str
    call_id: str
    tool: str
    decision: Literal["approve", "reject", "revise"]
    decided_by: Literal["signal", "update", "timeout", "cancel"]
    """`cancel`: the turn was cancelled while the call waited (decision `reject`)."""
    feedback: str | None = None
    arguments: dict[str, Any] | None = None
    """For `revise`: the arguments the tool runs with instead."""
    reviewer: str | None = None
    """Who decided, when the decision named them (None for a timeout)."""
    key_name: str | None = None
    """The API key the decision came with, by its configured name."""
    decided_at: datetime | None = None
    """When the decision was recorded (workflow time)."""


class ToolResultEvent(EventPayload):
    """A tool answered (or failed). The whole result is in the transcript, not here."""

    TYPE = "tool.result"
    call_id: str
    tool: str
    is_error: bool = False
    glimpse: str = ""
    """The first characters of the result."""
    ref: str | None = None
    """Set when the result was too large for history: read it whole from the store."""


class MemoryItem(BaseModel):
    """One long-term memory, as events show it."""

    id: str
    kind: str
    text: str | None = None
    score: float | None = None


class MemoryRecalled(EventPayload):
    """Long-term memory found entries relevant to the turn."""

    TYPE = "memory.recalled"
    memories: list[MemoryItem] = Field(default_factory=list)


class MemoryStored(EventPayload):
    """The turn wrote entries to long-term memory."""

    TYPE = "memory.stored"
    memories: list[MemoryItem] = Field(default_factory=list)


class Handoff(EventPayload):
    """One agent handed the conversation to another."""

    TYPE = "handoff"
    from_agent: str
    to_agent: str
    call_id: str | None = None
    """The tool call through which the model handed over, if any."""
    reason: str | None = None
    child_workflow_id: str | None = None
    """The workflow the specialist runs in, a child of the session's (see it in the Temporal UI)."""


class PlanStepOut(BaseModel):
    """A step of a plan, as `plan.proposed` and `plan.decided` show it."""

    id: str
    description: str
    agent: str
    depends_on: list[str] = Field(default_factory=list)


class PlanProposed(EventPayload):
    """A planner proposed a plan; with `needs_decision` it waits for
    `POST …/plans/{plan_id}` (approve, reject with feedback, or revise its steps)."""

    TYPE = "plan.proposed"
    plan_id: str
    goal: str
    steps: list[PlanStepOut]
    attempt: int = 1
    """Which proposal of the turn this is: a rejected plan is followed by the next."""
    needs_decision: bool = False
    expires_at: datetime | None = None


class PlanDecided(EventPayload):
    """A plan was approved, rejected (the planner proposes again) or revised; `decided_by`
    `policy` when `approvals.plans` asked for no decision."""

    TYPE = "plan.decided"
    plan_id: str
    decision: Literal["approve", "reject", "revise"]
    decided_by: Literal["update", "timeout", "policy"]
    feedback: str | None = None
    reviewer: str | None = None
    steps: list[PlanStepOut] | None = None
    """With `revise`: the steps that run instead."""


class PlanStepStarted(EventPayload):
    """A step of a plan started: its agent runs it as a child session."""

    TYPE = "plan.step.started"
    plan_id: str
    step_id: str
    agent: str
    child_workflow_id: str | None = None


class PlanStepCompleted(EventPayload):
    """A step of a plan ended: `completed` with its agent's answer, or `failed`."""

    TYPE = "plan.step.completed"
    plan_id: str
    step_id: str
    agent: str
    status: Literal["completed", "failed"]
    glimpse: str = ""
    """The first characters of the answer (the plan's listing has it whole)."""
    error: str | None = None


class PlanCompleted(EventPayload):
    """A plan ended: `completed` once the planner answered, or `failed` with the error."""

    TYPE = "plan.completed"
    plan_id: str
    status: Literal["completed", "failed", "cancelled"]
    error: str | None = None


class TurnCompleted(EventPayload):
    """The turn ended with an answer."""

    TYPE = "turn.completed"
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    """The model (its formation name) that gave the final answer, a fallback's included."""


class TurnFailed(EventPayload):
    """The turn ended without an answer."""

    TYPE = "turn.failed"
    error: str
    error_id: str | None = None
    """Set when the workflow's own code failed: the id its log line carries."""


class TurnCancelled(EventPayload):
    """The turn was cancelled: a cancel request, or a newer message under `on_busy:
    interrupt | rollback`. Its model or tool call under way has stopped."""

    TYPE = "turn.cancelled"
    reason: Literal["cancelled", "interrupted"] = "cancelled"
    """`interrupted`: a newer message cancelled it (`interrupted_by` names its turn)."""
    interrupted_by: str | None = None
    rolled_back: bool = False
    """The turn's messages are gone from the transcript (the model never sees them)."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens its model calls used before it stopped."""


class SessionClosed(EventPayload):
    """The session ended: the last event of its stream."""

    TYPE = "session.closed"
    reason: str = "closed"


PAYLOADS: dict[str, type[EventPayload]] = {
    cls.TYPE: cls
    for cls in (
        TurnStarted,
        AgentSelected,
        MessageDelta,
        MessageCompleted,
        ToolCallEvent,
        ApprovalRequested,
        ApprovalDecided,
        ToolResultEvent,
        MemoryRecalled,
        MemoryStored,
        Handoff,
        PlanProposed,
        PlanDecided,
        PlanStepStarted,
        PlanStepCompleted,
        PlanCompleted,
        TurnCompleted,
        TurnFailed,
        TurnCancelled,
        SessionClosed,
    )
}
"""The payload model of each event type."""


class SessionEvent(BaseModel):
    """One step of a session. On the wire `data` is flattened into the event object.

    `data` stays a plain dict in the stream, so events published by an older
    or newer release still decode; `payload()` gives the typed view.
    """

    type: EventType
    session_id: str
    turn_id: str | None = None
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls, payload: EventPayload, *, session_id: str, turn_id: str | None, ts: datetime
    ) -> SessionEvent:
        """The event that carries `payload`.

        Args:
            payload: The typed payload; its class names the event type.
            session_id: The session's id (not its workflow id).
            turn_id: The turn it belongs to, or None for session-wide events.
            ts: When it happened.
        """
        return cls(
            type=payload.TYPE,
            session_id=session_id,
            turn_id=turn_id,
            ts=ts,
            data=payload.model_dump(mode="json"),
        )

    def payload(self) -> EventPayload:
        """The typed payload.

        Raises:
            pydantic.ValidationError: If `data` does not match the type's model.
        """
        return PAYLOADS[self.type].model_validate(self.data)

    def wire(self) -> dict[str, Any]:
        """The JSON object clients see: `{type, session_id, turn_id, ts, …payload}`."""
        return {
            "type": self.type,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "ts": self.ts.isoformat(),
            **self.data,
        }
