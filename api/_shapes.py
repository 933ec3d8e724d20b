"""Sessions and turns in the API's JSON shapes, from what Temporal and the store say."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from api.deps import AppState
from api.schemas import ChatResponse, ForkedFrom, SessionListItem, SessionOut
from keel.messages import Message, final_answer, tokens_of
from keel.session import (
    SUMMARY_MEMO,
    AssistantReply,
    SessionSummary,
    TurnResult,
    TurnSummary,
    session_id_of,
)
from keel.temporal import AGENT_ATTR, PENDING_APPROVALS_ATTR, USER_ATTR, workflow_ui_url

FORKED_FROM_MEMO = "forked_from"
"""The memo key of a fork's `ForkedFrom`, set when it starts."""


def session_out(
    state: AppState,
    workflow_id: str,
    run_id: str | None,
    *,
    active: bool,
    user_id: str,
    agent: str,
    metadata: dict[str, Any],
    created_at: datetime,
    forked_from: ForkedFrom | None = None,
) -> SessionOut:
    """A session's JSON shape."""
    settings = state.settings
    return SessionOut(
        id=session_id_of(workflow_id),
        agent=agent,
        user_id=user_id,
        status="active" if active else "closed",
        created_at=created_at,
        workflow_id=workflow_id,
        run_id=run_id,
        temporal_ui_url=workflow_ui_url(
            settings.temporal_ui_url, settings.namespace, workflow_id, run_id
        ),
        metadata=metadata,
        forked_from=forked_from,
    )


async def from_execution(state: AppState, execution: WorkflowExecution) -> SessionOut:
    """A session's JSON shape from a visibility record or a describe."""
    attrs = execution.typed_search_attributes
    memo = await execution.memo()
    forked_from = memo.get(FORKED_FROM_MEMO)
    return session_out(
        state,
        execution.id,
        execution.run_id,
        active=execution.status == WorkflowExecutionStatus.RUNNING,
        user_id=attrs.get(USER_ATTR) or "",
        agent=attrs.get(AGENT_ATTR) or "",
        metadata=memo.get("metadata") or {},
        created_at=execution.start_time,
        forked_from=ForkedFrom.model_validate(forked_from) if forked_from else None,
    )


async def summary_of(execution: WorkflowExecution) -> SessionSummary | None:
    """What the session mirrors into its memo; None for sessions of older builds."""
    return await execution.memo_value(SUMMARY_MEMO, None, type_hint=SessionSummary)


async def list_items(
    state: AppState, executions: Sequence[WorkflowExecution]
) -> list[SessionListItem]:
    """A page of sessions from visibility records, with one store call for all of them.

    The count of pending approvals is the session's `KeelPendingApprovals`, else (a
    session of an older build) its memo's; the last activity is the store's.
    """
    sessions = [await from_execution(state, e) for e in executions]
    last = await state.store.last_activity([s.workflow_id for s in sessions])
    items = []
    for execution, session in zip(executions, sessions, strict=True):
        attributes = execution.typed_search_attributes
        if session.status != "active":
            pending = 0
        elif PENDING_APPROVALS_ATTR in attributes:
            pending = attributes.get(PENDING_APPROVALS_ATTR) or 0
        else:
            summary = await summary_of(execution)
            pending = len(summary.pending_approvals) if summary else 0
        items.append(
            SessionListItem(
                **session.model_dump(),
                pending_approval_count=pending,
                last_activity_at=last.get(session.workflow_id),
            )
        )
    return items


def chat_response(session_id: str, result: TurnResult) -> ChatResponse:
    """A turn's outcome in the API's shape."""
    return ChatResponse(session_id=session_id, **result.model_dump())


def ended_turn(
    session_id: str, turn_id: str, stored: list[Message], summary: TurnSummary | None
) -> ChatResponse | None:
    """A turn that ended, from the memo's summary of it or its stored messages; else None."""
    answer = final_answer(stored)
    reply = AssistantReply(content=answer.content) if answer else None
    if summary is not None:
        return ChatResponse(
            session_id=session_id,
            turn_id=turn_id,
            status=summary.status,
            message=reply if summary.status == "completed" else None,
            usage=summary.usage,
            error=summary.error,
        )
    if reply is None:
        return None
    return ChatResponse(
        session_id=session_id,
        turn_id=turn_id,
        status="completed",
        message=reply,
        usage=tokens_of(stored),
    )
