"""Sessions in Temporal as the API reaches them: start, describe, and read without a worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import temporalio.api.common.v1
import temporalio.api.enums.v1
import temporalio.api.update.v1
import temporalio.api.workflowservice.v1
from temporalio.client import Client, WorkflowExecution
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from api._errors import session_errors, session_not_found, temporal_errors
from api._page_tokens import page_not_found
from api._seed import SessionSeed, seeded_input, store_seed
from api._shapes import FORKED_FROM_MEMO, from_execution, session_out, summary_of
from api.deps import AppState, Caller
from api.problems import Problem
from api.schemas import ForkedFrom, SessionOut
from keel.approvals import Approval
from keel.formation import AgentConfig
from keel.logging import get_logger
from keel.messages import Usage
from keel.names import SESSION_WORKFLOW
from keel.plans import Plan
from keel.session import (
    CancelTurnInput,
    CancelTurnResult,
    CarriedState,
    SessionState,
    SessionSummary,
    new_session_input,
)
from keel.session_handle import SessionHandle
from keel.temporal import (
    AGENT_ATTR,
    FORMATION_ATTR,
    PENDING_APPROVALS_ATTR,
    TENANT_ATTR,
    TOPICS_ATTR,
    USER_ATTR,
)

T = TypeVar("T")
log = get_logger(__name__)

LIVE_STATE_TIMEOUT = timedelta(seconds=0.5)
"""How long a read waits for a worker to answer the `state` query before it falls back."""
_LIVE_STATE_LIMIT_S = 0.75
"""The query's limit, retries included: the SDK retries a query (`retry=True`), each attempt
with `LIVE_STATE_TIMEOUT`; once, just after a worker was killed, a read took 3.4 s so."""
_ACCEPTED = temporalio.api.enums.v1.UpdateWorkflowExecutionLifecycleStage
_WAIT_FOR_ACCEPTED = temporalio.api.update.v1.WaitPolicy(
    lifecycle_stage=_ACCEPTED.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED
)


@dataclass(frozen=True)
class DescribedSession:
    """A session as Temporal describes it, with no worker involved."""

    session: SessionOut
    handle: SessionHandle
    summary: SessionSummary | None
    """What the workflow mirrors into its memo; None for sessions of older builds."""


def resolve_agent(state: AppState, name: str | None) -> AgentConfig:
    """The agent named, or the formation's default; 404 if unknown."""
    if name is None:
        return state.formation.default_agent
    try:
        return state.formation.agent(name)
    except KeyError:
        raise Problem(404, f"no agent named {name!r}", type_="agent-not-found") from None


async def start_session(
    state: AppState,
    client: Client,
    caller: Caller,
    *,
    agent: AgentConfig,
    user_id: str,
    metadata: dict[str, Any],
    topics: list[str] | None = None,
    session_id: str | None = None,
    retried: bool = False,
    seed: SessionSeed | None = None,
    carried: CarriedState | None = None,
    forked_from: ForkedFrom | None = None,
) -> SessionOut:
    """Start the workflow of a new session; 409 past the user's session limit.

    Args:
        session_id: the id to use; a session that already has it is the answer
            (a retried request). A new id by default.
        retried: an earlier attempt of this request may have started the
            session: the limit, which would count it, is not checked again.
        seed: messages and instructions the session starts with (`api._seed`).
        carried: where the session starts, as if a run handed it over (a fork
            starts after the prefix it copied).
        forked_from: the session a fork copied its transcript from.
    """
    if caller.limited and not retried:
        await check_session_quota(state, client, caller.tenant, user_id)
    session_id = session_id or uuid.uuid4().hex
    memo: dict[str, Any] = {"metadata": metadata}
    summary = f"session with {agent.name} for {user_id}"
    if forked_from is not None:
        memo[FORKED_FROM_MEMO] = forked_from.model_dump()
        summary += f", forked from {forked_from.session_id} at seq {forked_from.seq}"
    start = new_session_input(
        state.formation,
        agent,
        tenant=caller.tenant,
        user_id=user_id,
        activities_task_queue=state.queues.activities,
        session_id=session_id,
        sees_all_users=not caller.user_given,
    ).model_copy(update={"carried": carried})
    handle = SessionHandle.of(client, caller.tenant, session_id)
    if seed is not None:
        start = seeded_input(start, seed)
        await store_seed(state.store, start, handle.id, seed)
    with temporal_errors():
        started = await client.start_workflow(
            SESSION_WORKFLOW,
            start,
            id=handle.id,
            task_queue=state.queues.sessions,
            # A retried request finds its session; a closed session is never restarted.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(FORMATION_ATTR, state.formation.id),
                    SearchAttributePair(TENANT_ATTR, caller.tenant),
                    SearchAttributePair(USER_ATTR, user_id),
                    SearchAttributePair(AGENT_ATTR, agent.name),
                    SearchAttributePair(TOPICS_ATTR, topics or []),
                    # Set at start, so a namespace without it refuses the start, never
                    # the session's later upserts (workflows/_turns.py says why).
                    SearchAttributePair(PENDING_APPROVALS_ATTR, 0),
                ]
            ),
            memo=memo,
            static_summary=summary,
        )
    return session_out(
        state,
        handle.id,
        started.result_run_id,
        active=True,
        user_id=user_id,
        agent=agent.name,
        metadata=metadata,
        created_at=datetime.now(UTC),
        forked_from=forked_from,
    )


def sessions_query(state: AppState, tenant: str, user: str | None, *clauses: str) -> str:
    """A visibility query for the sessions of this formation in `tenant` (`user`'s, if named)."""
    base = [
        f"WorkflowType = '{SESSION_WORKFLOW}'",
        state.queues.visibility_clause(),
        f"{TENANT_ATTR.name} = '{tenant}'",
    ]
    if user:
        base.append(f"{USER_ATTR.name} = '{user}'")
    return " AND ".join([*base, *clauses])


@dataclass(frozen=True)
class VisibilityPage:
    """One page of a visibility listing, and the signed token of the next."""

    executions: list[WorkflowExecution]
    next_page_token: str | None


async def visibility_page(
    state: AppState, client: Client, query: str, *, limit: int, token: str | None
) -> VisibilityPage:
    """One visibility call: a page of `query`'s workflows, newest started first.

    A `token` this API did not issue for the same query, or one Temporal no
    longer knows, names no page: 404 `page-not-found`.
    """
    cursor = state.page_tokens.open(token, query) if token else None
    try:
        with temporal_errors():
            pages = client.list_workflows(query, page_size=limit, next_page_token=cursor)
            await pages.fetch_next_page()
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise page_not_found() from None
    following = pages.next_page_token
    return VisibilityPage(
        executions=list(pages.current_page or []),
        next_page_token=state.page_tokens.issue(following, query) if following else None,
    )


async def describe_session(
    state: AppState, client: Client, caller: Caller, session_id: str
) -> DescribedSession:
    """The session, its handle and its memo's summary; 404 if the caller cannot see it
    (another user's, or another formation's: formations may share a namespace)."""
    handle = SessionHandle.of(client, caller.tenant, session_id)
    with temporal_errors():
        description = await handle.workflow.describe()
    formation = description.typed_search_attributes.get(FORMATION_ATTR)
    if description.workflow_type != SESSION_WORKFLOW or not state.queues.owns(
        formation, description.task_queue
    ):
        raise session_not_found(session_id)
    session = await from_execution(state, description)
    if not caller.can_see(session.user_id):
        # 404, not 403: a caller must not learn that another user's id exists.
        raise session_not_found(session_id)
    summary = await summary_of(description)
    return DescribedSession(session, handle, summary)


async def agent_session(
    state: AppState, client: Client, caller: Caller, session_id: str, agent: AgentConfig
) -> SessionOut:
    """The caller's session `session_id`; 404 if it cannot see it, 409 if another agent's."""
    session = (await describe_session(state, client, caller, session_id)).session
    if session.agent != agent.name:
        raise Problem(
            409, f"session {session.id!r} belongs to agent {session.agent!r}", type_="wrong-agent"
        )
    return session


async def live_state(described: DescribedSession) -> SessionState | None:
    """The workflow's own answer, if the session runs and a worker answers within a second."""
    if described.session.status != "active":
        return None
    try:
        return await asyncio.wait_for(
            described.handle.state(rpc_timeout=LIVE_STATE_TIMEOUT), _LIVE_STATE_LIMIT_S
        )
    except (TimeoutError, RPCError) as err:
        log.info("no live state; reading without a worker", session=described.handle.id, error=err)
        return None


async def pending_approvals(described: DescribedSession) -> list[Approval]:
    """The session's pending approvals: its memo's, or its own where the memo is incomplete."""
    summary = described.summary
    if described.session.status != "active":
        return []
    if summary is not None and summary.approvals_complete:
        return summary.pending_approvals
    live = await live_state(described)
    if live is not None:
        return live.pending_approvals
    return summary.pending_approvals if summary else []


async def session_plans(described: DescribedSession) -> list[Plan]:
    """A planner's recent plans: its memo's, or its own where the memo cut them."""
    summary = described.summary
    if summary is not None and not summary.plans_elided:
        return summary.plans
    live = await live_state(described)
    if live is not None:
        return live.plans
    return summary.plans if summary else []


async def session_usage(state: AppState, described: DescribedSession) -> Usage:
    """The session's tokens: its memo's count, then the store's of the turns since."""
    summary = described.summary
    if summary is None:  # a session of an older build mirrors nothing: ask it
        live = await live_state(described)
        return live.usage if live else Usage()
    if summary.usage_from_seq is None:
        return summary.usage
    since = await state.store.usage(described.session.workflow_id, from_seq=summary.usage_from_seq)
    return summary.usage + since


async def turn_accepted(client: Client, workflow_id: str, turn_id: str) -> bool:
    """Whether the session's current run accepted the message of `turn_id` (no worker needed).

    The API sends each message with the turn id as its update id, and Temporal
    keeps a record of every update a run accepted.
    """
    request = temporalio.api.workflowservice.v1.PollWorkflowExecutionUpdateRequest(
        namespace=client.namespace,
        update_ref=temporalio.api.update.v1.UpdateRef(
            workflow_execution=temporalio.api.common.v1.WorkflowExecution(workflow_id=workflow_id),
            update_id=turn_id,
        ),
        identity=client.identity,
        wait_policy=_WAIT_FOR_ACCEPTED,
    )
    try:
        await client.workflow_service.poll_workflow_execution_update(
            request, timeout=LIVE_STATE_TIMEOUT
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED):
            return False
        raise
    return True


async def session_call(handle: SessionHandle, call: Awaitable[T]) -> T:
    """Await a call to a session, its refusals and Temporal's failures as problems.

    A call to a session whose workflow has ended answers 409 `session-closed`.
    """
    try:
        with session_errors():
            return await call
    except Problem as problem:
        if not isinstance(problem.__cause__, RPCError) or problem.status != 404:
            raise
        try:
            await handle.workflow.describe()
        except RPCError:
            raise problem from None
        raise Problem(409, "the session is closed", type_="session-closed") from None


async def cancel_turn(
    state: AppState,
    client: Client,
    caller: Caller,
    session_id: str,
    turn_id: str,
    *,
    rollback: bool | None = None,
) -> CancelTurnResult:
    """Cancel a turn of a session the caller can see (the REST route's and A2A's way).

    Raises:
        Problem: 404 `session-not-found` or `turn-not-found`, 409 `turn-ended` or
            `session-closed`.
    """
    handle = (await describe_session(state, client, caller, session_id)).handle
    cancel = CancelTurnInput(
        turn_id=turn_id,
        rollback=rollback,
        user_id=caller.user_id if caller.user_given else None,
    )
    return await session_call(handle, handle.cancel_turn(cancel))


async def check_session_quota(state: AppState, client: Client, tenant: str, user_id: str) -> None:
    """Refuse a new session to a user at `max_sessions_per_user` active ones.

    Counted in Temporal's visibility store, which lags writes by a moment, so
    sessions started at the same instant may pass the limit by a few.
    """
    limit = state.settings.max_sessions_per_user
    if not limit:
        return
    query = sessions_query(state, tenant, user_id, "ExecutionStatus = 'Running'")
    with temporal_errors():
        active = (await client.count_workflows(query)).count
    if active >= limit:
        raise Problem(
            409,
            f"this user has {active} active sessions, the limit is {limit}; close one first",
            type_="too-many-sessions",
        )
