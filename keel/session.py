"""Inputs, results and state of `SessionWorkflow`, shared by the workflow, the API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio.contrib.workflow_streams import WorkflowStreamState

from keel.formation import ModelConfig, PrivacyConfig, SessionsConfig
from keel.messages import Message, Usage

SESSION_WORKFLOW = "keel.Session"

TurnStatus = Literal["queued", "running", "awaiting_approval", "completed", "failed", "cancelled"]
FINAL_TURN_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


def session_workflow_id(tenant: str, session_id: str) -> str:
    """The workflow id of a session: the tenant is part of it, so tenants never collide."""
    return f"keel/{tenant}/{session_id}"


class AgentSnapshot(BaseModel):
    """The agent as it was when the session started.

    Carried in the workflow input rather than looked up from the worker's
    formation, so replaying a session never depends on a file that has
    changed since. It holds env var names, never secrets.
    """

    name: str
    system_prompt: str | None = None
    model_name: str
    model: ModelConfig
    tools: list[str] = Field(default_factory=list)
    max_steps: int = 8
    buffer_messages: int = 50


class QueuedTurn(BaseModel):
    """A user message waiting for its turn."""

    turn_id: str
    text: str
    received_at: datetime


class CarriedState(BaseModel):
    """What one run hands to the next at continue-as-new."""

    next_seq: int = 0
    turn_count: int = 0
    usage: Usage = Field(default_factory=Usage)
    queued: list[QueuedTurn] = Field(default_factory=list)
    unsynced: list[Message] = Field(default_factory=list)
    """Messages the transcript store may not have yet (e.g. of a failed turn)."""
    stream: WorkflowStreamState | None = None


class StartSessionInput(BaseModel):
    """Input of `SessionWorkflow`."""

    session_id: str
    tenant: str
    user_id: str
    agent: AgentSnapshot
    options: SessionsConfig = Field(default_factory=SessionsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    """What the session's step events may show; the workflow cannot read the formation."""
    activities_task_queue: str
    carried: CarriedState | None = None


class SessionResult(BaseModel):
    """What a closed session returns."""

    turn_count: int
    usage: Usage


class SendMessageInput(BaseModel):
    """Input of the `send_message` update."""

    text: str


class SendMessageResult(BaseModel):
    """The turn a message started, and the stream offset its events start at."""

    turn_id: str
    stream_offset: int


class WaitTurnInput(BaseModel):
    """Input of the `wait_turn` update."""

    turn_id: str


class AssistantReply(BaseModel):
    """The final answer of a turn."""

    role: Literal["assistant"] = "assistant"
    content: str


class TurnResult(BaseModel):
    """Status and outcome of one turn."""

    turn_id: str
    status: TurnStatus
    message: AssistantReply | None = None
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class CloseSessionInput(BaseModel):
    """Input of the `close` update."""

    reason: str | None = None


class CloseSessionResult(BaseModel):
    """Result of the `close` update."""

    status: Literal["closed"] = "closed"


class SessionState(BaseModel):
    """Result of the `state` query."""

    status: Literal["active", "closing"]
    agent: str
    current_turn: str | None
    queued_turns: list[str]
    turns: list[TurnResult]
    """Turns of the current run, newest last."""
    pending_approvals: list[dict[str, object]] = Field(default_factory=list)
    usage: Usage
    turn_count: int
    stream_offset: int
