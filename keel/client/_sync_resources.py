"""The resources of `Keel`: sessions, approvals, plans, triggers and agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from keel.approvals import Approval, Decision
from keel.client import _calls
from keel.client._calls import ApprovalListing, ChatMode, SessionStatus
from keel.client._models import (
    Agent,
    ChatAccepted,
    ChatResult,
    Session,
    SessionDetail,
    SessionPage,
    Trigger,
)
from keel.plans import Plan, PlanDecision

PlanSteps = list[dict[str, Any]]
"""Steps of a revised plan: `{id, description, agent, depends_on}` each."""

if TYPE_CHECKING:
    from keel.client._sync import Keel


class _Resource:
    def __init__(self, client: Keel) -> None:
        self._client = client


class Sessions(_Resource):
    """`/v1/sessions`: start, read, list and close sessions."""

    def create(
        self,
        agent: str | None = None,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        topics: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """Start a session with `agent` (the formation's default when None)."""
        call = _calls.create_session(agent, user_id, metadata, topics, idempotency_key)
        return self._client._call(call)

    def get(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> SessionDetail:
        """The session with its messages (after `after_seq`), pending approvals and usage."""
        return self._client._call(_calls.get_session(session_id, after_seq, limit))

    def list(
        self,
        *,
        user_id: str | None = None,
        agent: str | None = None,
        status: SessionStatus | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> SessionPage:
        """A page of sessions, newest first; pass `next_page_token` on for the next."""
        call = _calls.list_sessions(user_id, agent, status, limit, page_token)
        return self._client._call(call)

    def close(self, session_id: str) -> Session:
        """Close the session: a running turn finishes, queued ones are cancelled."""
        return self._client._call(_calls.close_session(session_id))

    def turn(self, session_id: str, turn_id: str) -> ChatResult:
        """A turn's status, and its outcome once it has ended."""
        return self._client._call(_calls.get_turn(session_id, turn_id))


class Approvals(_Resource):
    """`/v1/sessions/{id}/approvals`: tool calls waiting for a person."""

    def list(self, session_id: str, *, status: ApprovalListing = "pending") -> list[Approval]:
        """The session's pending approvals, or (`status="decided"`) its past decisions:
        who decided (`decided_by`, `reviewer`, `key_name`), when, and how."""
        return self._client._call(_calls.list_approvals(session_id, status))

    def decide(
        self,
        session_id: str,
        approval_id: str,
        decision: Decision,
        *,
        feedback: str | None = None,
        arguments: dict[str, Any] | None = None,
        reviewer: str | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Approve, reject (`feedback` goes to the model) or revise (new `arguments`
        and/or `feedback`) a pending tool call; answers the decided approval.

        Raises:
            Conflict: The approval was decided already (`extra` holds the decision that stands).
        """
        call = _calls.decide(
            session_id, approval_id, decision, feedback, arguments, reviewer, idempotency_key
        )
        return self._client._call(call)


class Plans(_Resource):
    """`/v1/sessions/{id}/plans`: a planner's plans, and decisions on those that wait."""

    def list(self, session_id: str) -> list[Plan]:
        """The session's recent plans, oldest first."""
        return self._client._call(_calls.list_plans(session_id))

    def decide(
        self,
        session_id: str,
        plan_id: str,
        decision: PlanDecision,
        *,
        feedback: str | None = None,
        steps: PlanSteps | None = None,
        reviewer: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan:
        """Approve a proposed plan, reject it (`feedback` goes to the planner, which plans
        again) or revise it (`steps` run instead); answers the decided plan.

        Raises:
            Conflict: The plan waits for no decision (decided already, or never gated).
        """
        call = _calls.decide_plan(
            session_id, plan_id, decision, feedback, steps, reviewer, idempotency_key
        )
        return self._client._call(call)


class Triggers(_Resource):
    """`/v1/triggers`: named ways to start a turn."""

    def list(self) -> list[Trigger]:
        """The formation's triggers."""
        return self._client._call(_calls.list_triggers())

    @overload
    def fire(
        self,
        name: str,
        *,
        data: dict[str, Any] | None = ...,
        session_id: str | None = ...,
        mode: Literal["async"] = ...,
        wait_s: float | None = ...,
        secret: str | bytes | None = ...,
        idempotency_key: str | None = ...,
    ) -> ChatAccepted: ...

    @overload
    def fire(
        self,
        name: str,
        *,
        data: dict[str, Any] | None = ...,
        session_id: str | None = ...,
        mode: Literal["sync"],
        wait_s: float | None = ...,
        secret: str | bytes | None = ...,
        idempotency_key: str | None = ...,
    ) -> ChatResult: ...

    def fire(
        self,
        name: str,
        *,
        data: dict[str, Any] | None = None,
        session_id: str | None = None,
        mode: ChatMode = "async",
        wait_s: float | None = None,
        secret: str | bytes | None = None,
        idempotency_key: str | None = None,
    ) -> ChatAccepted | ChatResult:
        """Render the trigger's template with `data` and send it to its agent.

        Args:
            name: The trigger.
            data: What its template reads (`{{ data.title }}`).
            session_id: Continue this session instead of starting one.
            mode: `async` answers the turn's ids at once; `sync` waits for its outcome.
            wait_s: In sync mode, how long the API waits.
            secret: A signed trigger's secret: the body is signed with it.
            idempotency_key: Sent as `Idempotency-Key` (one is made when None).
        """
        call = _calls.fire_trigger(name, data, session_id, mode, wait_s, secret, idempotency_key)
        answer = self._client._call(call)
        return answer if mode == "async" else self._client._outcome(answer)


class Agents(_Resource):
    """`/v1/agents`: the formation's agents."""

    def list(self) -> list[Agent]:
        """Every agent of the formation."""
        return self._client._call(_calls.list_agents())

    def get(self, name: str) -> Agent:
        """One agent."""
        return self._client._call(_calls.get_agent(name))
