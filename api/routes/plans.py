"""`/v1/sessions/{id}/plans`: a planner's plans, and decisions on the ones that wait."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from api import _sessions
from api._idempotency import Idempotent
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import PlanId, SessionId
from keel.plans import MAX_STEPS, Plan, PlanDecision, PlanDecisionInput, PlanList, PlanStepSpec

router = APIRouter(prefix="/v1/sessions/{session_id}/plans", tags=["plans"])


_DECISION_RULES: list[JsonValue] = [
    {"properties": {"decision": {"enum": ["approve", "reject"]}, "steps": {"type": "null"}}},
    {
        "properties": {
            "decision": {"const": "revise"},
            "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS},
        },
        "required": ["steps"],
    },
]
"""What `PlanDecisionInput` checks, for the OpenAPI document: `steps` go with `revise`
only, and `revise` needs them."""


class PlanDecisionBody(BaseModel):
    """`POST …/plans/{plan_id}`: `steps` go with `revise` only, and `revise` needs them."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _DECISION_RULES})

    decision: PlanDecision
    feedback: str | None = Field(default=None, max_length=10_000)
    """With `reject`: what the planner should change; it proposes a new plan."""
    steps: list[PlanStepSpec] | None = Field(default=None, min_length=1, max_length=MAX_STEPS)
    """With `revise`: the steps to run instead of the proposed ones."""
    reviewer: str | None = Field(default=None, min_length=1, max_length=128)
    """Who decides; by default the caller's `X-User-Id`."""


@router.get("", responses=problem_responses(404))
async def list_plans(
    session_id: SessionId, state: State, client: TemporalClient, caller: CurrentCaller
) -> PlanList:
    """The session's recent plans, oldest first (read without a worker)."""
    described = await _sessions.describe_session(state, client, caller, session_id)
    return PlanList(plans=await _sessions.session_plans(described))


@router.post("/{plan_id}", responses=problem_responses(404, 409, 422))
async def decide_plan(
    session_id: SessionId,
    plan_id: PlanId,
    body: PlanDecisionBody,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    idempotency: Idempotent,
) -> Plan:
    """Approve a proposed plan, reject it (the planner proposes again, told the feedback),
    or revise its steps. A plan that waits for no decision answers 409 `plan-decided`;
    revised steps that cannot run (an unknown agent, a dependency cycle) 422 `invalid-plan`.
    """
    reviewer = body.reviewer or (caller.user_id[:128] if caller.user_given else None)
    try:
        decision = PlanDecisionInput(
            plan_id=plan_id, **body.model_dump(exclude={"reviewer"}), reviewer=reviewer
        )
    except ValidationError as err:
        reasons = [str(e["msg"]).removeprefix("Value error, ") for e in err.errors()]
        raise Problem(422, "; ".join(reasons), type_="invalid-decision") from None
    handle = (await _sessions.describe_session(state, client, caller, session_id)).handle
    claim = await idempotency.claim(caller, body)
    decided = handle.decide_plan(decision, update_id=claim.update_id)
    return await claim.finish(await _sessions.session_call(handle, decided), response)
