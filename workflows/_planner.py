"""A planner's turn: propose a plan, have it decided, run its steps by delegation, answer.

The steps run as child sessions (`workflows/_delegation.py`), each once every step it
depends on has completed, so independent steps run side by side. A child's workflow id
comes from the turn, the plan's model step and the step id: a replay (a new worker after
a crash) re-attaches to the children already started and never runs a done step again.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._cancel import TurnCancel
from workflows._delegation import delegate
from workflows._loop import AgentLoop
from workflows._plans import PlanBook
from workflows._step import Publish, Step
from workflows._turns import TurnError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from keel.contracts.llm import CallModelResult
    from keel.contracts.tools import CallToolResult
    from keel.events import (
        PlanCompleted,
        PlanDecided,
        PlanProposed,
        PlanStepCompleted,
        PlanStepOut,
        PlanStepStarted,
    )
    from keel.messages import ToolCall
    from keel.names import ActivityErrors
    from keel.plans import Plan, PlanStep, ProposedPlan, plan_schema, ready_steps
    from keel.session import QueuedTurn, StartSessionInput, TurnResult

MAX_PROPOSALS = 5
"""Plans one turn may propose (invalid ones and rejected ones count): then it fails."""
GLIMPSE_CHARS = 200


class PlannerTurn:
    """Runs a planner agent's turn.

    Args:
        input: the session's input (its agent is the planner; `team` its step agents).
        loop: the session's agent loop, for the planner's own model calls and messages.
        book: the session's plans.
        publish: the workflow's `_publish`.
        cancel: the running turn's cancel.
    """

    def __init__(
        self,
        input: StartSessionInput,
        loop: AgentLoop,
        book: PlanBook,
        publish: Publish,
        cancel: TurnCancel,
    ) -> None:
        self._input = input
        self._loop = loop
        self._book = book
        self._publish = publish
        self._cancel = cancel

    async def run(self, turn: TurnResult, queued: QueuedTurn) -> CallModelResult:
        """Plan, run the plan, answer; the planner's answer is the turn's."""
        try:
            return await self._run(turn, queued)
        except (asyncio.CancelledError, Exception) as err:
            # Not GeneratorExit: an evicted workflow's coroutine is closed, and may not
            # issue commands. A plan of a turn that ends this way ends with it.
            cancelled = self._cancel.of(turn.turn_id) is not None
            error = None if cancelled else str(err) or type(err).__name__
            status = "cancelled" if cancelled else "failed"
            for plan in self._book.end_turn(turn.turn_id, status, error):
                self._publish(
                    PlanCompleted(plan_id=plan.plan_id, status=status, error=error), turn.turn_id
                )
            raise

    async def _run(self, turn: TurnResult, queued: QueuedTurn) -> CallModelResult:
        steps = _Steps(turn.turn_id, tuple(queued.ask_chain))
        plan, step = await self._decided_plan(turn, steps)
        plan = await self._run_steps(turn, plan, step)
        failed = next((s for s in plan.steps if s.status == "failed"), None)
        if failed is not None:
            error = (
                f"plan {plan.plan_id} failed: step {failed.id!r} ({failed.agent}) failed: "
                f"{failed.error}"
            )
            self._book.replace(plan.model_copy(update={"status": "failed", "error": error}))
            self._publish(
                PlanCompleted(plan_id=plan.plan_id, status="failed", error=error), turn.turn_id
            )
            raise TurnError(error)
        self._loop.note(turn.turn_id, _results_note(plan))
        result = await self._loop.answer(turn, steps.next(), queued.response_schema)
        self._book.replace(plan.model_copy(update={"status": "completed"}))
        self._publish(PlanCompleted(plan_id=plan.plan_id, status="completed"), turn.turn_id)
        return result

    async def _decided_plan(self, turn: TurnResult, steps: _Steps) -> tuple[Plan, Step]:
        """A valid plan, approved (or revised) where `approvals.plans` asks; and its step."""
        schema = plan_schema(self._input.agent.routes)
        for attempt in range(1, MAX_PROPOSALS + 1):
            step = steps.next()
            try:
                result = await self._loop.answer(turn, step, schema)
            except ActivityError as err:
                if not _unstructured(err):
                    raise
                # The model kept answering off the schema: tell it, as for a plan that
                # cannot run, within the same bound.
                proposed, problems = None, [str(err.cause)]
            else:
                proposed, problems = self._parse(result.data)
            if proposed is None:
                listed = "\n".join(f"- {p}" for p in problems)
                self._loop.note(
                    turn.turn_id,
                    f"The plan cannot run:\n{listed}\nPropose a corrected plan.",
                )
                continue
            plan = self._book.propose(turn.turn_id, proposed, attempt)
            self._publish(
                PlanProposed(
                    plan_id=plan.plan_id,
                    goal=plan.goal,
                    steps=_steps_out(plan.steps),
                    attempt=attempt,
                    needs_decision=plan.expires_at is not None,
                    expires_at=plan.expires_at,
                ),
                turn.turn_id,
            )
            if plan.expires_at is not None:
                turn.status = "awaiting_approval"
                plan = await self._book.wait(plan.plan_id)
                turn.status = "running"
            else:
                plan = self._book.run_as_proposed(plan.plan_id)
            assert plan.decision is not None and plan.decided_by is not None
            self._publish(
                PlanDecided(
                    plan_id=plan.plan_id,
                    decision=plan.decision,
                    decided_by=plan.decided_by,
                    feedback=plan.feedback,
                    reviewer=plan.reviewer,
                    steps=_steps_out(plan.steps) if plan.decision == "revise" else None,
                ),
                turn.turn_id,
            )
            if plan.decision != "reject":
                return plan, step
            if plan.decided_by == "timeout":
                error = f"plan {plan.plan_id} was not decided in time ({plan.feedback})"
                self._book.replace(plan.model_copy(update={"error": error}))
                raise TurnError(error)
            self._loop.note(
                turn.turn_id,
                "The plan was rejected."
                + (f" Feedback: {plan.feedback}" if plan.feedback else "")
                + "\nPropose a new plan.",
            )
        raise TurnError(f"no plan could run after {MAX_PROPOSALS} proposals")

    def _parse(self, data: object) -> tuple[ProposedPlan | None, list[str]]:
        try:
            proposed = ProposedPlan.model_validate(data)
        except ValidationError as err:
            where = [".".join(str(p) for p in e["loc"]) or "(root)" for e in err.errors()]
            return None, [f"{w}: {e['msg']}" for w, e in zip(where, err.errors(), strict=True)]
        problems = self._book.problems(list(proposed.steps))
        return (None, problems) if problems else (proposed, [])

    async def _run_steps(self, turn: TurnResult, plan: Plan, step: Step) -> Plan:
        """Run each step once its dependencies completed; stop starting more once one fails."""
        plan_id = plan.plan_id
        tasks: dict[str, asyncio.Task[CallToolResult]] = {}
        failed = False
        while True:
            plan = self._book.get(plan_id)
            if not failed:
                for ready in ready_steps(plan):
                    tasks[ready.id] = asyncio.create_task(self._start(turn, plan_id, step, ready))
            if not tasks:
                break
            try:
                await workflow.wait(list(tasks.values()), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # The turn is cancelled: tasks of its own are not, unless told.
                for task in tasks.values():
                    task.cancel()
                raise
            # In the plan's order (the dict's), never the set `wait` returns: determinism.
            for step_id in [k for k, t in tasks.items() if t.done()]:
                failed = self._ended(turn, plan_id, step_id, tasks.pop(step_id).result()) or failed
        plan = self._book.get(plan_id)
        if failed:
            skipped = [
                s.model_copy(update={"status": "skipped"}) if s.status == "pending" else s
                for s in plan.steps
            ]
            plan = self._book.replace(plan.model_copy(update={"steps": skipped}))
        return plan

    async def _start(
        self, turn: TurnResult, plan_id: str, step: Step, plan_step: PlanStep
    ) -> CallToolResult:
        plan = self._book.get(plan_id)
        call = ToolCall(
            id=f"plan-{plan.attempt}-{plan_step.id}",
            name=plan_step.agent,
            arguments={"message": _task(plan, plan_step)},
        )
        child_id = step.key(call)
        self._set_step(plan_id, plan_step.id, status="running", child_workflow_id=child_id)
        self._publish(
            PlanStepStarted(
                plan_id=plan_id,
                step_id=plan_step.id,
                agent=plan_step.agent,
                child_workflow_id=child_id,
            ),
            turn.turn_id,
        )
        try:
            return await delegate(self._input, step, call, self._publish)
        except (ActivityError, ApplicationError) as err:
            return CallToolResult(content=f"{plan_step.agent} failed: {err}", is_error=True)

    def _ended(self, turn: TurnResult, plan_id: str, step_id: str, result: CallToolResult) -> bool:
        """Record a step's end; whether it failed."""
        plan_step = self._book.get(plan_id).step(step_id)
        if result.usage is not None:
            # The step's specialist spent its tokens for this turn (`keel-usage-rollup-1`).
            turn.usage = turn.usage + result.usage
        if result.is_error:
            self._set_step(plan_id, step_id, status="failed", error=result.content)
        else:
            self._set_step(plan_id, step_id, status="completed", answer=result.content)
        self._publish(
            PlanStepCompleted(
                plan_id=plan_id,
                step_id=step_id,
                agent=plan_step.agent,
                status="failed" if result.is_error else "completed",
                glimpse="" if result.is_error else result.content[:GLIMPSE_CHARS],
                error=result.content if result.is_error else None,
            ),
            turn.turn_id,
        )
        return result.is_error

    def _set_step(self, plan_id: str, step_id: str, **update: object) -> None:
        plan = self._book.get(plan_id)
        steps = [s.model_copy(update=update) if s.id == step_id else s for s in plan.steps]
        self._book.replace(plan.model_copy(update={"steps": steps}))


class _Steps:
    """Numbers the planner's model calls of a turn: 1, 2, … (plan, re-plans, answer)."""

    def __init__(self, turn_id: str, ask_chain: tuple[str, ...]) -> None:
        self._turn_id = turn_id
        self._ask_chain = ask_chain
        self._number = 0

    def next(self) -> Step:
        self._number += 1
        return Step(self._turn_id, self._number, self._ask_chain)


def _unstructured(err: ActivityError) -> bool:
    cause = err.cause
    return (
        isinstance(cause, ApplicationError)
        and cause.type == ActivityErrors.INVALID_STRUCTURED_OUTPUT
    )


def _steps_out(steps: list[PlanStep]) -> list[PlanStepOut]:
    return [
        PlanStepOut(id=s.id, description=s.description, agent=s.agent, depends_on=s.depends_on)
        for s in steps
    ]


def _task(plan: Plan, step: PlanStep) -> str:
    """What a step's agent is asked: its description, then the answers it depends on."""
    if not step.depends_on:
        return step.description
    earlier = "\n\n".join(
        f"Result of step {dep} ({plan.step(dep).agent}):\n{plan.step(dep).answer}"
        for dep in step.depends_on
    )
    return f"{step.description}\n\n{earlier}"


def _results_note(plan: Plan) -> str:
    """The message that hands the planner its steps' answers for its own answer."""
    parts = [f"The plan ran (goal: {plan.goal}). Results of its steps:"]
    parts += [f"Step {s.id} ({s.agent}): {s.answer}" for s in plan.steps]
    parts.append("Answer the original request with them.")
    return "\n\n".join(parts)
