"""Request and response bodies of the HTTP API (v1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from keel.settings import TENANT_PATTERN
from keel.store import MAX_SEQ

# The answers' shapes live in keel.wire, shared with the Python client; routes import them here.
from keel.wire import AgentList as AgentList
from keel.wire import AgentOut as AgentOut
from keel.wire import ChatAccepted as ChatAccepted
from keel.wire import ChatResponse as ChatResponse
from keel.wire import ForkedFrom as ForkedFrom
from keel.wire import SessionDetail as SessionDetail
from keel.wire import SessionListItem as SessionListItem
from keel.wire import SessionOut as SessionOut
from keel.wire import SessionPage as SessionPage

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
ID_MAX_LENGTH = 128
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
NAME_MAX_LENGTH = 64
TENANT_MAX_LENGTH = 64
APPROVAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
"""An approval id: an id, but at most 64 characters, as the session workflow takes them."""
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MAX_OFFSET = 2**53 - 1
"""The largest event offset a caller may name: exact as a JSON number in every client."""


def _max_json_bytes(limit: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        except UnicodeEncodeError:  # a lone surrogate: valid JSON, but no payload can carry it
            raise ValueError("must hold valid Unicode text only") from None
        if size > limit:
            raise ValueError(f"must be at most {limit} bytes as JSON")
        return value

    return check


# Path and header parameters: every id is checked before it reaches Temporal.
SessionId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
TurnId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
ApprovalId = Annotated[str, Path(pattern=APPROVAL_ID_PATTERN, max_length=64)]
PlanId = Annotated[str, Path(pattern=APPROVAL_ID_PATTERN, max_length=64)]
AgentName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]
LastEventId = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_OFFSET)]
"""An SSE resume offset; anything but a non-negative integer is a 422."""

UserIdHeader = Annotated[str | None, Header(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
TenantIdHeader = Annotated[str | None, Header(pattern=TENANT_PATTERN, max_length=TENANT_MAX_LENGTH)]
UserIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
AgentQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]
TurnIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]

# Body fields naming things: the same patterns, with their lengths declared for clients.
OptionalId = Annotated[str | None, Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
OptionalName = Annotated[str | None, Field(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)]

Metadata = Annotated[dict[str, Any], AfterValidator(_max_json_bytes(16_384))]
"""A session's free-form metadata: kept in the workflow's memo, so small."""
JsonObject = Annotated[dict[str, Any], AfterValidator(_max_json_bytes(65_536))]
"""A JSON object a caller sends (a response schema, revised tool arguments): 64 KiB at most."""


class CreateSession(BaseModel):
    """`POST /v1/sessions`."""

    agent: OptionalName = None
    user_id: OptionalId = None
    metadata: Metadata = Field(default_factory=dict, max_length=64)
    topics: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=32
    )
    """Topics this session subscribes to: agents' `publish` calls reach it as messages."""


def _no_bool(value: object) -> object:
    """JSON's true/false are not numbers, though Python's bool is an int (87805.0 is one)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


class ForkSession(BaseModel):
    """`POST /v1/sessions/{id}/fork`."""

    upto_seq: Annotated[int, Field(ge=0, le=MAX_SEQ), BeforeValidator(_no_bool)] | None = None
    """Copy the messages before this seq: a turn's first message, or the end of the
    transcript. By default, every turn that has ended (see docs/api.md)."""


_BOTH_SESSION_AND_AGENT: dict[str, Any] = {
    "required": ["session_id", "agent"],
    "properties": {"session_id": {"type": "string"}, "agent": {"type": "string"}},
}
"""A chat that names an existing session and an agent: refused, the session has its agent."""


class ChatRequest(BaseModel):
    """`POST /v1/chat`."""

    model_config = ConfigDict(json_schema_extra={"not": _BOTH_SESSION_AND_AGENT})

    message: str = Field(min_length=1, max_length=1_000_000)
    """At most the smaller of `KEEL_MAX_MESSAGE_CHARS` and the formation's limit; the
    OpenAPI document states the limit this API enforces."""
    session_id: OptionalId = None
    agent: OptionalName = None
    """Only when starting a session: with `session_id` too it is a 422."""
    user_id: OptionalId = None
    stream: bool = False
    mode: Literal["sync", "async"] = "sync"
    wait_s: float = Field(default=120, gt=0, le=3600)
    """In sync mode, how long to wait for the answer before answering 202."""
    response_schema: JsonObject | None = None


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

    user_id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)


class ForgetResult(BaseModel):
    """What `POST /v1/memory/forget` removed."""

    user_id: str
    sessions_terminated: int
    sessions_deleted: int
    rows_deleted: int
    """Transcript store rows: messages, summaries, references, session, usage and idempotency
    records."""
    memories_deleted: int
