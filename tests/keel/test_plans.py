"""A plan's checks: agents it may use, step ids, dependencies and cycles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from keel.formation import PlanApprovalConfig
from keel.plans import (
    Plan,
    PlanDecisionInput,
    PlanStep,
    PlanStepSpec,
    needs_decision,
    plan_problems,
    ready_steps,
)

AGENTS = ("research", "writer")


def step(id: str, *depends_on: str, agent: str = "research") -> PlanStepSpec:
    return PlanStepSpec(id=id, description=f"do {id}", agent=agent, depends_on=list(depends_on))


def test_a_plan_with_known_agents_and_acyclic_dependencies_has_no_problems() -> None:
    assert plan_problems([step("a"), step("b"), step("c", "a", "b", agent="writer")], AGENTS) == []


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([step("a", agent="nobody")], "step 'a': agent 'nobody' is not one of research, writer"),
        ([step("a"), step("a")], "step id 'a' is used twice"),
        ([step("a", "a")], "step 'a' depends on itself"),
        ([step("a", "z")], "step 'a' depends on 'z', which is no step"),
        ([step("a"), step("b", "a", "a")], "step 'b' lists 'a' twice in depends_on"),
        (
            [step("a", "c"), step("b", "a"), step("c", "b")],
            "the steps depend on each other in a cycle: a -> c -> b -> a",
        ),
    ],
)
def test_a_plan_that_cannot_run_says_why(steps: list[PlanStepSpec], expected: str) -> None:
    assert expected in plan_problems(steps, AGENTS)


def test_ready_steps_are_pending_ones_whose_dependencies_completed() -> None:
    plan = Plan(
        plan_id="p",
        turn_id="t",
        goal="g",
        proposed_at=datetime.now(UTC),
        steps=[
            PlanStep(**step("a").model_dump(), status="completed"),
            PlanStep(**step("b").model_dump(), status="running"),
            PlanStep(**step("c", "a").model_dump()),
            PlanStep(**step("d", "a", "b").model_dump()),
        ],
    )
    assert [s.id for s in ready_steps(plan)] == ["c"]


def test_the_gate_follows_approvals_plans() -> None:
    assert not needs_decision("never", 10)
    assert needs_decision("always", 1)
    assert not needs_decision(PlanApprovalConfig(min_steps=3), 2)
    assert needs_decision(PlanApprovalConfig(min_steps=3), 3)


def test_a_decision_says_how_to_revise() -> None:
    with pytest.raises(ValidationError, match="revise needs steps"):
        PlanDecisionInput(plan_id="p", decision="revise", feedback="shorter")
    with pytest.raises(ValidationError, match="steps go with decision 'revise' only"):
        PlanDecisionInput(plan_id="p", decision="approve", steps=[step("a")])
