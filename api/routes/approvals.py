"""`/v1/sessions/{id}/approvals`: tool calls waiting for a human, and their decisions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from api import _sessions
from api._approvals import decided_approvals
from api._idempotency import Idempotent
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import ApprovalId, JsonObject, SessionId
from keel.approvals import REVIEWER_MAX_LENGTH, Approval, ApprovalDecisionInput, Decision
from keel.wire import ApprovalList

router = APIRouter(prefix="/v1/sessions/{session_id}/approvals", tags=["approvals"])


_DECISION_RULES: list[JsonValue] = [
    {"properties": {"decision": {"enum": ["approve", "reject"]}, "arguments": {"type": "null"}}},
    {
        "properties": {
            "decision": {"const": "revise"},
            "feedback": {"type": "string", "maxLength": 10_000},
        },
        "required": ["feedback"],
    },
    {
        "properties": {"decision": {"const": "revise"}, "arguments": {"type": "object"}},
        "required": ["arguments"],
    },
]
"""What `ApprovalDecisionInput` checks, for the OpenAPI document: `arguments` go with
`revise` only, and `revise` says how (feedback, arguments, or both)."""


class DecisionBody(BaseModel):
    """`POST …/approvals/{approval_id}`."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _DECISION_RULES})

    decision: Decision
    feedback: str | None = Field(default=None, max_length=10_000)
    arguments: JsonObject | None = None
    reviewer: str | None = Field(default=None, min_length=1, max_length=REVIEWER_MAX_LENGTH)
    """Who decides, as the console's user typed it; by default the caller's `X-User-Id`."""


@router.get("", responses=problem_responses(404))
async def list_approvals(
    session_id: SessionId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    status: Literal["pending", "decided"] = "pending",
) -> ApprovalList:
    """Tool calls of this session waiting for a decision, or (`status=decided`) past
    decisions, newest first: who decided (`reviewer`, `key_name`), when (`decided_at`),
    how (`decided_by`), the outcome, feedback and revised arguments. Read without a worker:
    pending ones from the session's memo, decided ones from its transcript."""
    described = await _sessions.describe_session(state, client, caller, session_id)
    if status == "decided":
        workflow_id = described.session.workflow_id
        return ApprovalList(approvals=await decided_approvals(state.store, workflow_id))
    return ApprovalList(approvals=await _sessions.pending_approvals(described))


@router.post("/{approval_id}", responses=problem_responses(404, 409))
async def decide(
    session_id: SessionId,
    approval_id: ApprovalId,
    body: DecisionBody,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    idempotency: Idempotent,
) -> Approval:
    """Approve, reject (feedback goes to the model) or revise (new arguments and/or feedback).

    A decision on an approval already decided answers 409 `approval-decided` with the
    decision that stands: `approval_status`, `decision`, `decided_by` and `reviewer`.
    """
    reviewer = body.reviewer or (
        caller.user_id[:REVIEWER_MAX_LENGTH] if caller.user_given else None
    )
    try:
        decision = ApprovalDecisionInput(
            approval_id=approval_id,
            **body.model_dump(exclude={"reviewer"}),
            reviewer=reviewer,
            key_name=caller.key_name[:REVIEWER_MAX_LENGTH] if caller.key_name else None,
        )
    except ValidationError as err:
        reasons = [str(e["msg"]).removeprefix("Value error, ") for e in err.errors()]
        raise Problem(422, "; ".join(reasons), type_="invalid-decision") from None
    handle = (await _sessions.describe_session(state, client, caller, session_id)).handle
    # The key's own update id: Temporal answers a retry with the first decision's outcome.
    claim = await idempotency.claim(caller, body)
    decided = handle.respond_to_approval(decision, update_id=claim.update_id)
    return await claim.finish(await _sessions.session_call(handle, decided), response)
