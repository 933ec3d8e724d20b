"""The Python client of Keel's HTTP API: `Keel` (blocking) and `AsyncKeel` (asyncio).

Both have the same methods and answer with the models the API itself sends
(`keel.wire`, `keel.events`); errors are `KeelError` subclasses carrying the
API's problem+json. `AsyncKeel.embedded()` and `Keel.embedded()` run Keel in
the process for tests and notebooks. See docs/sdk.md.
"""

from keel.client._async import AsyncEventStream, AsyncKeel
from keel.client._errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    KeelConnectionError,
    KeelError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
)
from keel.client._events import Event
from keel.client._models import (
    Agent,
    Approval,
    AssistantReply,
    ChatAccepted,
    ChatResult,
    FieldProblem,
    Message,
    Problem,
    Session,
    SessionDetail,
    SessionListItem,
    SessionPage,
    Trigger,
    Usage,
)
from keel.client._sync import EventStream, Keel

__all__ = [
    "Agent",
    "Approval",
    "AssistantReply",
    "AsyncEventStream",
    "AsyncKeel",
    "BadRequest",
    "ChatAccepted",
    "ChatResult",
    "Conflict",
    "Event",
    "EventStream",
    "FieldProblem",
    "Forbidden",
    "InvalidRequest",
    "Keel",
    "KeelConnectionError",
    "KeelError",
    "Message",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "RateLimited",
    "ServerError",
    "Session",
    "SessionDetail",
    "SessionListItem",
    "SessionPage",
    "Trigger",
    "Unauthorized",
    "UnexpectedResponse",
    "Usage",
]
