"""The client's names for the API's shapes: the very models the API answers with (`keel.wire`)."""

from __future__ import annotations

from keel.approvals import Approval
from keel.messages import Message, Usage
from keel.session import AssistantReply
from keel.wire import AgentOut as Agent
from keel.wire import ChatAccepted, FieldProblem, SessionDetail, SessionListItem, SessionPage
from keel.wire import ChatResponse as ChatResult
from keel.wire import ProblemDetails as Problem
from keel.wire import SessionOut as Session
from keel.wire import TriggerOut as Trigger

__all__ = [
    "Agent",
    "Approval",
    "AssistantReply",
    "ChatAccepted",
    "ChatResult",
    "FieldProblem",
    "Message",
    "Problem",
    "Session",
    "SessionDetail",
    "SessionListItem",
    "SessionPage",
    "Trigger",
    "Usage",
]
