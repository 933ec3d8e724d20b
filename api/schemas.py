"""Request and response bodies of the HTTP API (v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from keel.approvals import Approval
from keel.messages import Message, Usage
from keel.session import AssistantReply, TurnStatus

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


class AgentOut(BaseModel):
    """An agent of the formation."""

    name: str
    role: str
    description: str
    model: str
    tools: list[str]
    routes: list[str]


class AgentList(BaseModel):
    """`GET /v1/agents`."""

    agents: list[AgentOut]


class CreateSession(BaseModel):
    """`POST /v1/sessions`."""

    agent: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=64)
    topics: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=32
    )
    """Topics this session subscribes to: agents' `publish` calls reach it as messages."""


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


class SessionDetail(SessionOut):
    """`GET /v1/sessions/{id}`: the session with its transcript."""

    messages: list[Message]
    pending_approvals: list[Approval]
    usage: Usage


class SessionPage(BaseModel):
    """`GET /v1/sessions`."""

    sessions: list[SessionOut]
    next_page_token: str | None = None


class ChatRequest(BaseModel):
    """`POST /v1/chat`."""

    message: str = Field(min_length=1, max_length=1_000_000)
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)
    agent: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    stream: bool = False
    mode: Literal["sync", "async"] = "sync"
    wait_s: float = Field(default=120, gt=0, le=3600)
    """In sync mode, how long to wait for the answer before answering 202."""
    response_schema: dict[str, Any] | None = None


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


class ChatAccepted(BaseModel):
    """Async chat: the turn is queued; poll `url`."""

    session_id: str
    turn_id: str
    status: TurnStatus
    url: str
    stream_offset: int


class MemoryOut(BaseModel):
    """A long-term memory of a user."""

    id: str
    kind: Literal["fact", "exchange"]
    text: str
    user_id: str
    formation: str
    session_id: str
    created_at: datetime


class MemoryPage(BaseModel):
    """`GET /v1/memory`."""

    memories: list[MemoryOut]
    next_offset: str | None = None


class ForgetUser(BaseModel):
    """`POST /v1/memory/forget`."""

    user_id: str = Field(pattern=ID_PATTERN)


class ForgetResult(BaseModel):
    """What `POST /v1/memory/forget` removed."""

    user_id: str
    sessions_terminated: int
    sessions_deleted: int
    rows_deleted: int
    """Transcript store rows: messages, summaries, references and session records."""
    memories_deleted: int
