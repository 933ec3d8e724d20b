"""The API calls the clients make, built once for both: path, body, and the model of the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from keel.approvals import Approval, Decision
from keel.client._http import Call, by_status, field_of, model
from keel.client._models import (
    Agent,
    ChatAccepted,
    ChatResult,
    Session,
    SessionDetail,
    SessionPage,
    Trigger,
)
from keel.plans import Plan, PlanDecision, PlanList
from keel.wire import AgentList, ApprovalList, TriggerList, UsageReport

SessionStatus = Literal["active", "closed"]
ApprovalListing = Literal["pending", "decided"]
UsageGroup = Literal["session", "user", "agent", "model"]
ChatMode = Literal["sync", "async"]


_TURN_ANSWER = by_status({200: ChatResult, 202: ChatAccepted})
"""A turn's answer: its outcome, or 202 when it runs on (async mode, or past `wait_s`)."""
SYNC_WAIT_S = 120.0
"""How long the API waits for a sync answer when the request names no `wait_s`."""


def _waits(body: dict[str, Any]) -> float | None:
    """How long the API may hold a turn's request: `wait_s` in sync mode, else not at all."""
    return (body.get("wait_s") or SYNC_WAIT_S) if body.get("mode") == "sync" else None


def _seg(value: str) -> str:
    """A path segment: an id the API would refuse stays in its segment, for a clear 404/422."""
    return quote(value, safe="")


def list_agents() -> Call[list[Agent]]:
    return Call("GET", "/v1/agents", field_of(AgentList, "agents"))


def get_agent(name: str) -> Call[Agent]:
    return Call("GET", f"/v1/agents/{_seg(name)}", model(Agent))


def create_session(
    agent: str | None,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    topics: list[str] | None,
    idempotency_key: str | None,
) -> Call[Session]:
    body = {"agent": agent, "user_id": user_id, "metadata": metadata, "topics": topics}
    return Call("POST", "/v1/sessions", model(Session), body=body, idempotency_key=idempotency_key)


def get_session(session_id: str, after_seq: int | None, limit: int | None) -> Call[SessionDetail]:
    params = {"after_seq": after_seq, "limit": limit}
    return Call("GET", f"/v1/sessions/{_seg(session_id)}", model(SessionDetail), params=params)


def list_sessions(
    user_id: str | None,
    agent: str | None,
    status: SessionStatus | None,
    limit: int | None,
    page_token: str | None,
) -> Call[SessionPage]:
    params = {
        "user_id": user_id,
        "agent": agent,
        "status": status,
        "limit": limit,
        "page_token": page_token,
    }
    return Call("GET", "/v1/sessions", model(SessionPage), params=params)


def close_session(session_id: str) -> Call[Session]:
    return Call("DELETE", f"/v1/sessions/{_seg(session_id)}", model(Session))


def get_turn(session_id: str, turn_id: str) -> Call[ChatResult]:
    path = f"/v1/sessions/{_seg(session_id)}/turns/{_seg(turn_id)}"
    return Call("GET", path, model(ChatResult))


@dataclass(frozen=True)
class Chat:
    """A message for `POST /v1/chat`, and where it goes."""

    message: str
    session_id: str | None = None
    agent: str | None = None
    user_id: str | None = None
    response_schema: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def body(self, **how: Any) -> dict[str, Any]:
        """The request's body, with how to answer (`mode`, `wait_s`, `stream`)."""
        return {
            "message": self.message,
            "session_id": self.session_id,
            "agent": self.agent,
            "user_id": self.user_id,
            "response_schema": self.response_schema,
            **how,
        }


def chat(chat: Chat, wait_s: float | None) -> Call[ChatResult | ChatAccepted]:
    """A sync chat: the answer, or 202 once the API stops waiting."""
    body = chat.body(mode="sync", wait_s=wait_s)
    return Call(
        "POST",
        "/v1/chat",
        _TURN_ANSWER,
        body=body,
        waits=_waits(body),
        idempotency_key=chat.idempotency_key,
    )


def send(chat: Chat) -> Call[ChatAccepted]:
    """An async chat: 202 with the turn's ids."""
    body = chat.body(mode="async")
    decode = by_status({202: ChatAccepted})
    return Call("POST", "/v1/chat", decode, body=body, idempotency_key=chat.idempotency_key)


def stream(chat: Chat, timeout: httpx.Timeout) -> Call[None]:
    """A streamed chat: read as a stream, not decoded."""
    body = chat.body(stream=True)
    return Call(
        "POST",
        "/v1/chat",
        lambda _: None,
        body=body,
        timeout=timeout,
        idempotency_key=chat.idempotency_key,
    )


def list_approvals(session_id: str, status: ApprovalListing) -> Call[list[Approval]]:
    path = f"/v1/sessions/{_seg(session_id)}/approvals"
    return Call("GET", path, field_of(ApprovalList, "approvals"), params={"status": status})


def decide(
    session_id: str,
    approval_id: str,
    decision: Decision,
    feedback: str | None,
    arguments: dict[str, Any] | None,
    reviewer: str | None,
    idempotency_key: str | None,
) -> Call[Approval]:
    path = f"/v1/sessions/{_seg(session_id)}/approvals/{_seg(approval_id)}"
    body = {
        "decision": decision,
        "feedback": feedback,
        "arguments": arguments,
        "reviewer": reviewer,
    }
    return Call("POST", path, model(Approval), body=body, idempotency_key=idempotency_key)


def list_plans(session_id: str) -> Call[list[Plan]]:
    path = f"/v1/sessions/{_seg(session_id)}/plans"
    return Call("GET", path, field_of(PlanList, "plans"))


def decide_plan(
    session_id: str,
    plan_id: str,
    decision: PlanDecision,
    feedback: str | None,
    steps: list[dict[str, Any]] | None,
    reviewer: str | None,
    idempotency_key: str | None,
) -> Call[Plan]:
    path = f"/v1/sessions/{_seg(session_id)}/plans/{_seg(plan_id)}"
    body = {"decision": decision, "feedback": feedback, "steps": steps, "reviewer": reviewer}
    return Call("POST", path, model(Plan), body=body, idempotency_key=idempotency_key)


def usage(
    group_by: UsageGroup, since: datetime | None, until: datetime | None, user_id: str | None
) -> Call[UsageReport]:
    params = {
        "group_by": group_by,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "user_id": user_id,
    }
    return Call("GET", "/v1/usage", model(UsageReport), params=params)


def list_triggers() -> Call[list[Trigger]]:
    return Call("GET", "/v1/triggers", field_of(TriggerList, "triggers"))


def fire_trigger(
    name: str,
    data: dict[str, Any] | None,
    session_id: str | None,
    mode: ChatMode,
    wait_s: float | None,
    secret: str | bytes | None,
    idempotency_key: str | None,
) -> Call[ChatResult | ChatAccepted]:
    body = {"data": data, "session_id": session_id, "mode": mode, "wait_s": wait_s}
    return Call(
        "POST",
        f"/v1/triggers/{_seg(name)}",
        _TURN_ANSWER,
        body=body,
        waits=_waits(body),
        idempotency_key=idempotency_key,
        secret=secret.encode() if isinstance(secret, str) else secret,
    )
