"""A session's plans: the ones its planner proposed, their decisions, and what the memo shows."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from keel.formation import ApprovalsConfig
    from keel.names import Rejections
    from keel.plans import (
        Plan,
        PlanDecidedBy,
        PlanDecisionInput,
        PlanStep,
        PlanStepSpec,
        ProposedPlan,
        needs_decision,
        plan_problems,
    )

PLANS_KEPT = 20
"""Plans the session keeps (ended ones beyond go first): a late decision still gets
"already decided", and the listing shows recent history."""
PLANS_CARRIED = 5
"""Plans handed to the next run at continue-as-new."""
ANSWER_CHARS_IN_SUMMARY = 500
PLANS_IN_SUMMARY = 5


class PlanBook:
    """The plans of a session. Deterministic: workflow time and workflow uuids only.

    Args:
        carried: plans the previous run handed over.
        config: the session's approvals (`plans`, `timeout_s`, `on_timeout`).
        agents: the agents the planner's steps may use.
        on_change: called after every change (the workflow mirrors plans into its memo).
    """

    def __init__(
        self,
        carried: list[Plan],
        config: ApprovalsConfig,
        agents: Collection[str],
        on_change: Callable[[], None],
    ) -> None:
        self._config = config
        self._agents = agents
        self._on_change = on_change
        self._plans: dict[str, Plan] = {p.plan_id: p for p in carried}

    def gated(self, steps: int) -> bool:
        """Whether a plan of `steps` steps waits for a human decision."""
        return needs_decision(self._config.plans, steps)

    def problems(self, steps: list[PlanStepSpec]) -> list[str]:
        """Why these steps cannot run (empty when they can)."""
        return plan_problems(steps, self._agents)

    def propose(self, turn_id: str, proposed: ProposedPlan, attempt: int) -> Plan:
        """Record a checked plan; it waits for a decision if `approvals.plans` says so."""
        now = workflow.now()
        gated = self.gated(len(proposed.steps))
        plan = Plan(
            plan_id=str(workflow.uuid4()),
            turn_id=turn_id,
            goal=proposed.goal,
            steps=[PlanStep(**s.model_dump()) for s in proposed.steps],
            attempt=attempt,
            proposed_at=now,
            expires_at=now + timedelta(seconds=self._config.timeout_s) if gated else None,
        )
        self._plans[plan.plan_id] = plan
        self._forget_old()
        self._on_change()
        return plan

    def check(self, decision: PlanDecisionInput) -> Plan:
        """The plan a decision is for, and revised steps checked.

        Raises:
            ApplicationError: `UnknownPlan`, `PlanDecided` or `InvalidPlan`, so the
                update's caller learns why it was refused.
        """
        plan = self._plans.get(decision.plan_id)
        if plan is None:
            raise ApplicationError(
                f"no plan {decision.plan_id!r} in this session", type=Rejections.UNKNOWN_PLAN
            )
        if plan.status != "proposed" or plan.expires_at is None:
            raise ApplicationError(
                f"plan {plan.plan_id!r} waits for no decision: it is {plan.status}"
                + (f" ({plan.decision}, by {plan.decided_by})" if plan.decision else ""),
                plan.model_dump(mode="json", include={"status", "decision", "decided_by"}),
                type=Rejections.PLAN_DECIDED,
            )
        if decision.steps is not None and (problems := self.problems(decision.steps)):
            raise ApplicationError(
                "the revised steps cannot run: " + "; ".join(problems),
                type=Rejections.INVALID_PLAN,
            )
        return plan

    def decide(self, decision: PlanDecisionInput, *, by: PlanDecidedBy) -> Plan:
        """Record a decision on a waiting plan (checked again: an update may race another)."""
        plan = self.check(decision)
        update: dict[str, object] = {
            "decision": decision.decision,
            "decided_by": by,
            "feedback": decision.feedback,
            "reviewer": decision.reviewer,
            "expires_at": None,
            "status": "rejected" if decision.decision == "reject" else "running",
        }
        if decision.steps is not None:
            update["steps"] = [PlanStep(**s.model_dump()) for s in decision.steps]
        decided = plan.model_copy(update=update)
        self._plans[plan.plan_id] = decided
        self._on_change()
        return decided

    def run_as_proposed(self, plan_id: str) -> Plan:
        """A plan that waits for no decision: it runs as proposed."""
        return self.replace(
            self._plans[plan_id].model_copy(
                update={"decision": "approve", "decided_by": "policy", "status": "running"}
            )
        )

    async def wait(self, plan_id: str) -> Plan:
        """Wait for the decision on a plan, or apply `on_timeout` when the time is up."""
        try:
            await workflow.wait_condition(
                lambda: self._plans[plan_id].status != "proposed",
                timeout=timedelta(seconds=self._config.timeout_s),
            )
        except TimeoutError:
            if self._plans[plan_id].status == "proposed":
                timed_out = PlanDecisionInput(
                    plan_id=plan_id,
                    decision="approve" if self._config.on_timeout == "approve" else "reject",
                    feedback=f"no decision within {self._config.timeout_s:g} s",
                )
                self.decide(timed_out, by="timeout")
        return self._plans[plan_id]

    def get(self, plan_id: str) -> Plan:
        """The plan `plan_id` as it stands."""
        return self._plans[plan_id]

    def replace(self, plan: Plan) -> Plan:
        """Store a plan's new state (a step started or ended, the plan ended)."""
        self._plans[plan.plan_id] = plan
        self._on_change()
        return plan

    def end_turn(self, turn_id: str, status: str, error: str | None) -> list[Plan]:
        """Close the turn's plans that have not ended (a cancelled or failed turn); those closed."""
        closed = [
            plan.model_copy(update={"status": status, "error": error, "expires_at": None})
            for plan in self._plans.values()
            if plan.turn_id == turn_id and plan.status in ("proposed", "running")
        ]
        for plan in closed:
            self._plans[plan.plan_id] = plan
        if closed:
            self._on_change()
        return closed

    def recent(self) -> list[Plan]:
        """The session's plans, oldest first."""
        return list(self._plans.values())

    def carried(self) -> list[Plan]:
        """The plans to hand the next run."""
        return self.recent()[-PLANS_CARRIED:]

    def summary(self) -> tuple[list[Plan], bool]:
        """The recent plans as the memo shows them, step answers cut; and whether cut."""
        elided = False
        out: list[Plan] = []
        for plan in self.recent()[-PLANS_IN_SUMMARY:]:
            steps = []
            for step in plan.steps:
                if step.answer and len(step.answer) > ANSWER_CHARS_IN_SUMMARY:
                    elided = True
                    step = step.model_copy(update={"answer": step.answer[:ANSWER_CHARS_IN_SUMMARY]})
                steps.append(step)
            out.append(plan.model_copy(update={"steps": steps}))
        return out, elided

    def _forget_old(self) -> None:
        ended = [k for k, p in self._plans.items() if p.status not in ("proposed", "running")]
        for key in ended[: max(0, len(self._plans) - PLANS_KEPT)]:
            del self._plans[key]
