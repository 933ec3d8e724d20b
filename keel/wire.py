"""The JSON bodies the HTTP API answers with: one definition for the API and its Python client.

The API's routes return these models and the client (`keel.client`) parses
answers into them, so both always agree on the wire format. Request bodies stay
in `api/schemas.py`: the client sends plain JSON and the API alone validates it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.approvals import Approval
from keel.messages import Message, Usage, UsageTotal
from keel.session import AssistantReply, TurnStatus


class FieldProblem(BaseModel):
    """One refused field of a 422."""

    field: str
    message: str


class ProblemDetails(BaseModel):
    """The body of every error (RFC 9457), for the OpenAPI document."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


class AgentOut(BaseModel):
    """An agent of the formation."""

    name: str
    role: str
    description: str
    model: str
    tools: list[str]
    """As the formation lists them: names, and patterns such as `server.*`."""
    resolved_tools: list[str] = []
    """The tools `tools` names now, patterns resolved from their servers' tool lists
    (a server that cannot be reached in a few seconds contributes none)."""
    routes: list[str]


class AgentList(BaseModel):
    """`GET /v1/agents`."""

    agents: list[AgentOut]


class ForkedFrom(BaseModel):
    """The session a fork copied its transcript from, and where it cut it."""

    session_id: str
    seq: int
    """The fork holds the original's messages before this seq; its own start here."""


class SessionOut(BaseModel):
    """A session, with the Temporal workflow behind it."""

    id: str
    agent: str
    user_id: str
    status: Literal["active", "closed"]
    created_at: datetime
    workflow_id: str
    run_id: str | None
    temporal_ui_url: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    forked_from: ForkedFrom | None = None
    """Set for a session made by `POST /v1/sessions/{id}/fork`."""


class SessionDetail(SessionOut):
    """`GET /v1/sessions/{id}`: the session with its transcript."""

    messages: list[Message]
    pending_approvals: list[Approval]
    usage: Usage


class SessionListItem(SessionOut):
    """A session as `GET /v1/sessions` lists it: what a list of sessions shows besides."""

    pending_approval_count: int = 0
    """Tool calls waiting for a decision (0 for closed sessions)."""
    last_activity_at: datetime | None = None
    """When the session's latest message was written; None before its first."""


class SessionPage(BaseModel):
    """`GET /v1/sessions`."""

    sessions: list[SessionListItem]
    next_page_token: str | None = None


class ChatResponse(BaseModel):
    """A turn's outcome: the sync chat answer and `GET …/turns/{turn_id}`."""

    session_id: str
    turn_id: str
    status: TurnStatus
    message: AssistantReply | None = None
    data: Any = None
    """With `response_schema`: the answer as parsed, schema-valid JSON."""
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None
    model: str | None = None
    """The model (its name in the formation) that gave the answer: a fallback's when the
    agent's own model failed (`models.<name>.fallbacks`)."""


class ChatAccepted(BaseModel):
    """Async chat: the turn is queued; poll `url`."""

    session_id: str
    turn_id: str
    status: TurnStatus
    url: str
    stream_offset: int | None = None
    """Where the turn's events start; unknown when a sync chat stopped waiting."""


class ApprovalList(BaseModel):
    """Pending approvals of a session."""

    approvals: list[Approval]


class TriggerOut(BaseModel):
    """A trigger of the formation."""

    name: str
    agent: str
    schedule: str | None
    signed: bool
    """Whether calls must carry an `X-Keel-Signature` HMAC header."""


class TriggerList(BaseModel):
    """`GET /v1/triggers`."""

    triggers: list[TriggerOut]


class UsageReport(BaseModel):
    """`GET /v1/usage`: model calls summed per session, user, agent or model."""

    group_by: Literal["session", "user", "agent", "model"]
    since: datetime | None = None
    until: datetime | None = None
    items: list[UsageTotal]
    """Costliest first; a session's `key` is its id, and it counts its delegations' calls."""
