"""Plans of a planner agent: the typed plan, its steps, a decision on it, and the checks.

A planner's turn asks its model for a plan (structured output, `plan_schema`), checks it
(`plan_problems`), may wait for a human decision (`PlanDecisionInput`), then runs the
steps as delegations in dependency order. The workflow, the API and the client share
these shapes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from keel.formation import PlanApprovalConfig, PlanPolicy

PlanStatus = Literal["proposed", "rejected", "running", "completed", "failed", "cancelled"]
"""`proposed`: waits for a decision; `rejected`: replaced by a new plan (or refused);
`running`: its steps run; then `completed`, `failed` (a step failed) or `cancelled`
(its turn was)."""
StepStatus = Literal["pending", "running", "completed", "failed", "skipped"]
"""`skipped`: not run, because another step of the plan failed."""
PlanDecision = Literal["approve", "reject", "revise"]
PlanDecidedBy = Literal["update", "timeout", "policy"]
"""`policy`: `approvals.plans` did not ask for a decision, so the plan ran as proposed."""

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_STEPS = 20
"""Steps a plan may have: each runs as a child workflow of the session."""
DESCRIPTION_MAX_CHARS = 10_000
GOAL_MAX_CHARS = 2_000
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)]


class PlanStepSpec(BaseModel):
    """A step as the model (or a reviser) writes it."""

    id: StepId
    description: str = Field(min_length=1, max_length=DESCRIPTION_MAX_CHARS)
    """The task, in full: the step's agent gets it as its message."""
    agent: str = Field(min_length=1, max_length=64)
    depends_on: list[StepId] = Field(default_factory=list, max_length=MAX_STEPS)
    """Ids of the steps whose answers this one needs; it starts once they complete."""


class ProposedPlan(BaseModel):
    """The model's structured answer: what the plan is for, and its steps."""

    plan_id: str | None = None
    """Ignored: the session names each plan itself, so ids never collide."""
    goal: str = Field(default="", max_length=GOAL_MAX_CHARS)
    steps: list[PlanStepSpec] = Field(min_length=1, max_length=MAX_STEPS)


class PlanStep(PlanStepSpec):
    """A step of a plan, with how far it got."""

    status: StepStatus = "pending"
    answer: str | None = None
    """The agent's answer, once the step completed."""
    error: str | None = None
    child_workflow_id: str | None = None
    """The child session the step runs in (see it under the session in the Temporal UI)."""


class Plan(BaseModel):
    """A plan of a planner's turn: `{plan_id, goal, steps}` and where it stands."""

    plan_id: str
    turn_id: str
    goal: str
    steps: list[PlanStep]
    status: PlanStatus = "proposed"
    attempt: int = 1
    """Which proposal of its turn this is (a rejected plan is followed by the next)."""
    proposed_at: datetime
    expires_at: datetime | None = None
    """While it waits for a decision: when `approvals.on_timeout` applies."""
    decision: PlanDecision | None = None
    decided_by: PlanDecidedBy | None = None
    feedback: str | None = None
    reviewer: str | None = None
    error: str | None = None
    """Why the plan failed."""

    def step(self, step_id: str) -> PlanStep:
        """The step `step_id`; `KeyError` if the plan has none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class PlanDecisionInput(BaseModel):
    """A human's answer to a proposed plan: input of the `decide_plan` update."""

    plan_id: str = Field(min_length=1, max_length=64)
    decision: PlanDecision
    feedback: str | None = Field(default=None, max_length=10_000)
    """With `reject`: told to the model, which proposes a new plan."""
    steps: list[PlanStepSpec] | None = Field(default=None, min_length=1, max_length=MAX_STEPS)
    """With `revise`: the steps to run instead (checked like the model's)."""
    reviewer: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _revise_says_how(self) -> PlanDecisionInput:
        if self.decision == "revise" and self.steps is None:
            raise ValueError("revise needs steps")
        if self.decision != "revise" and self.steps is not None:
            raise ValueError("steps go with decision 'revise' only")
        return self


class PlanList(BaseModel):
    """`GET /v1/sessions/{id}/plans`: the session's recent plans, oldest first."""

    plans: list[Plan]


def plan_schema(agents: Sequence[str]) -> dict[str, Any]:
    """The JSON Schema a planner's model answers with, its agents named as an enum."""
    agent: dict[str, Any] = {"type": "string", "description": "The agent that runs the step."}
    if agents:
        agent["enum"] = list(agents)
    return {
        "type": "object",
        "properties": {
            "goal": {"type": "string", "description": "What the plan achieves."},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": STEP_ID_PATTERN},
                        "description": {
                            "type": "string",
                            "description": "The task for the agent, in full.",
                        },
                        "agent": agent,
                        "depends_on": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Ids of steps whose answers this step needs.",
                        },
                    },
                    "required": ["id", "description", "agent"],
                },
            },
        },
        "required": ["goal", "steps"],
    }


def plan_problems(steps: Sequence[PlanStepSpec], agents: Collection[str]) -> list[str]:
    """Why `steps` cannot run (empty when they can).

    Each step's agent must be one the planner may use; ids are unique; `depends_on`
    names other steps of the plan, each once; and the dependencies have no cycle.
    """
    problems: list[str] = []
    ids = [s.id for s in steps]
    for i, step in enumerate(steps):
        if step.id in ids[:i]:
            problems.append(f"step id {step.id!r} is used twice")
        if step.agent not in agents:
            known = ", ".join(sorted(agents)) or "none"
            problems.append(f"step {step.id!r}: agent {step.agent!r} is not one of {known}")
        for j, dep in enumerate(step.depends_on):
            if dep == step.id:
                problems.append(f"step {step.id!r} depends on itself")
            elif dep not in ids:
                problems.append(f"step {step.id!r} depends on {dep!r}, which is no step")
            elif dep in step.depends_on[:j]:
                problems.append(f"step {step.id!r} lists {dep!r} twice in depends_on")
    if not problems and (cycle := _cycle(steps)):
        problems.append("the steps depend on each other in a cycle: " + " -> ".join(cycle))
    return problems


def _cycle(steps: Sequence[PlanStepSpec]) -> list[str]:
    """A dependency cycle among `steps` (its ids, the first repeated last), or []."""
    deps = {s.id: s.depends_on for s in steps}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in deps[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return []

    for step in steps:
        if step.id not in state and (found := visit(step.id)):
            return found
    return []


def ready_steps(plan: Plan) -> list[PlanStep]:
    """Pending steps whose dependencies have all completed, in the plan's order."""
    done = {s.id for s in plan.steps if s.status == "completed"}
    return [s for s in plan.steps if s.status == "pending" and set(s.depends_on) <= done]


def needs_decision(policy: PlanPolicy, steps: int) -> bool:
    """Whether `approvals.plans` (`never | always | {min_steps: N}`) gates a plan of `steps`."""
    if isinstance(policy, PlanApprovalConfig):
        return steps >= policy.min_steps
    return policy == "always"
