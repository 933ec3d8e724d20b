"""A planner proposes a plan, has it decided, runs its steps as child sessions, and answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from keel.events import EVENTS_TOPIC, TURN_END_TYPES, SessionEvent
from keel.formation import Formation, formation_from_data
from keel.names import Rejections
from keel.plans import Plan, PlanDecisionInput, PlanStepSpec
from keel.session import CancelTurnInput
from keel.session_handle import SessionHandle, SessionRejected
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.runs import session_runs
from tests.workflows.helpers import chat, send, start_session, wait_for_turn


def planner_formation(**approvals: Any) -> Formation:
    """A planner `lead` whose plans use `research` and `writer`."""
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [
                {"name": "lead", "role": "planner", "description": "Plans the work"},
                {"name": "research", "description": "Finds facts"},
                {"name": "writer", "description": "Writes reports"},
            ],
            "approvals": approvals,
        },
        env={},
    )


def plan_message(*steps: dict[str, Any], goal: str = "a report") -> str:
    """A user message whose scripted planner answers with these steps."""
    return "Write the report " + "[[json " + json.dumps({"goal": goal, "steps": list(steps)}) + "]]"


A = {"id": "a", "description": "find A [[say A is 1]]", "agent": "research"}
B = {"id": "b", "description": "find B [[say B is 2]]", "agent": "research"}
C = {
    "id": "c",
    "description": "write it up [[say report: A=1, B=2]]",
    "agent": "writer",
    "depends_on": ["a", "b"],
}
THREE_STEPS = plan_message(A, B, C)


async def turn_events(client: Client, handle: SessionHandle, turn_id: str) -> list[SessionEvent]:
    """A turn's events, up to its last."""
    stream = WorkflowStreamClient.create(client, handle.id)
    events: list[SessionEvent] = []
    async with asyncio.timeout(60):
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            if item.data.turn_id == turn_id:
                events.append(item.data)
                if item.data.type in TURN_END_TYPES:
                    return events
    raise AssertionError("unreachable")


def plan_events(events: list[SessionEvent]) -> list[tuple[str, str | None]]:
    """`(type, step_id)` of a turn's plan events, in order."""
    return [(e.type, e.data.get("step_id")) for e in events if e.type.startswith("plan.")]


async def proposed_plan(handle: SessionHandle, attempt: int = 1) -> Plan:
    """The plan that waits for a decision (its `attempt`-th of the turn), within 30 s."""
    for _ in range(300):
        for plan in (await handle.state()).plans:
            if plan.status == "proposed" and plan.attempt == attempt:
                return plan
        await asyncio.sleep(0.1)
    raise AssertionError("no plan was proposed")


async def test_a_three_step_plan_runs_two_steps_in_parallel_then_the_third(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        turn_id = await send(handle, THREE_STEPS)
        result = await wait_for_turn(handle, turn_id)
        events = await turn_events(client, handle, turn_id)
        state = await handle.state()

    assert result.status == "completed" and result.message is not None
    # The planner's answer comes from a last model call given every step's answer.
    assert "Step a (research): A is 1" in result.message.content
    assert "Step c (writer): report: A=1, B=2" in result.message.content
    order = plan_events(events)
    assert order[:2] == [("plan.proposed", None), ("plan.decided", None)]
    started = [step for kind, step in order if kind == "plan.step.started"]
    assert started == ["a", "b", "c"]
    # a and b are independent: both start before either ends; c waits for both.
    first_end = order.index(next(e for e in order if e[0] == "plan.step.completed"))
    assert order.index(("plan.step.started", "b")) < first_end
    assert order.index(("plan.step.started", "c")) > order.index(("plan.step.completed", "a"))
    assert order.index(("plan.step.started", "c")) > order.index(("plan.step.completed", "b"))
    assert order[-1] == ("plan.completed", None)
    decided = next(e for e in events if e.type == "plan.decided")
    assert decided.data["decided_by"] == "policy"

    [plan] = state.plans
    assert plan.status == "completed" and plan.goal == "a report"
    assert [(s.id, s.status, s.answer) for s in plan.steps] == [
        ("a", "completed", "A is 1"),
        ("b", "completed", "B is 2"),
        ("c", "completed", "report: A=1, B=2"),
    ]
    # Each step ran in a child session; c was given the answers it depends on.
    children = {s.id: s.child_workflow_id for s in plan.steps}
    for step_id, child_id in children.items():
        assert child_id is not None
        description = await client.get_workflow_handle(child_id).describe()
        assert description.parent_id == handle.id, step_id
    c_task = (await store.messages(children["c"] or ""))[0].content
    assert "Result of step a (research):\nA is 1" in c_task
    a_child = await client.get_workflow_handle(children["a"] or "").describe()
    b_child = await client.get_workflow_handle(children["b"] or "").describe()
    assert a_child.close_time is not None and b_child.close_time is not None
    assert b_child.start_time < a_child.close_time and a_child.start_time < b_child.close_time


async def test_a_failing_step_fails_the_plan_and_the_turn_not_the_session(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation()
    failing = {"id": "b", "description": "find B [[fail 400]]", "agent": "research"}
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        turn_id = await send(handle, plan_message(A, failing, C))
        result = await wait_for_turn(handle, turn_id)
        events = await turn_events(client, handle, turn_id)
        after = await chat(
            handle, 'still there? [[json {"goal": "g", "steps": [' + json.dumps(A) + "]}]]"
        )
        state = await handle.state()

    assert result.status == "failed" and result.error is not None
    assert result.error.startswith("plan ") and "step 'b' (research) failed" in result.error
    assert events[-1].type == "turn.failed"
    completed = next(e for e in events if e.type == "plan.completed")
    assert completed.data["status"] == "failed"
    failed_plan = state.plans[0]
    assert failed_plan.status == "failed"
    assert [(s.id, s.status) for s in failed_plan.steps] == [
        ("a", "completed"),
        ("b", "failed"),
        ("c", "skipped"),
    ]
    assert after.status == "completed"


async def test_a_plan_that_cannot_run_is_planned_again_a_bounded_number_of_times(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation()
    bad = {"id": "a", "description": "x", "agent": "research", "depends_on": ["zzz"]}
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        result = await chat(handle, plan_message(bad))

    # The scripted model proposes the same plan every time: the turn fails, bounded.
    assert result.status == "failed" and result.error is not None
    assert "no plan could run after 5 proposals" in result.error


async def test_a_gated_plan_is_rejected_then_revised_then_runs(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation(plans="always")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        turn_id = await send(handle, plan_message(A, B, C))
        first = await proposed_plan(handle)
        # Rejected with feedback: the model is told, and (scripted) proposes anew.
        feedback = "only one step please " + plan_message(A)
        await handle.decide_plan(
            PlanDecisionInput(plan_id=first.plan_id, decision="reject", feedback=feedback)
        )
        second = await proposed_plan(handle, attempt=2)
        assert [s.id for s in second.steps] == ["a"]
        revised = await handle.decide_plan(
            PlanDecisionInput(
                plan_id=second.plan_id,
                decision="revise",
                steps=[PlanStepSpec(id="w", description="write [[say written]]", agent="writer")],
                reviewer="ann",
            )
        )
        result = await wait_for_turn(handle, turn_id)
        state = await handle.state()

    assert revised.status == "running" and [s.id for s in revised.steps] == ["w"]
    assert result.status == "completed" and result.message is not None
    assert "Step w (writer): written" in result.message.content
    assert [(p.status, p.decision) for p in state.plans] == [
        ("rejected", "reject"),
        ("completed", "revise"),
    ]


async def test_a_turn_cancelled_while_its_plan_waits_cancels_the_plan(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation(plans="always")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        turn_id = await send(handle, plan_message(A, B))
        plan = await proposed_plan(handle)
        await handle.cancel_turn(CancelTurnInput(turn_id=turn_id))
        result = await wait_for_turn(handle, turn_id)
        events = await turn_events(client, handle, turn_id)
        state = await handle.state()
        late = await _refusal(
            handle.decide_plan(PlanDecisionInput(plan_id=plan.plan_id, decision="approve"))
        )

    assert result.status == "cancelled"
    assert [p.status for p in state.plans] == ["cancelled"]
    assert [e.type for e in events][-2:] == ["plan.completed", "turn.cancelled"]
    assert late == Rejections.PLAN_DECIDED


async def test_a_plan_nobody_decides_in_time_fails_its_turn(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation(plans="always", timeout_s=1)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="lead")
        result = await chat(handle, plan_message(A))
        state = await handle.state()

    assert result.status == "failed" and result.error is not None
    assert "was not decided in time (no decision within 1 s)" in result.error
    [plan] = state.plans
    assert (plan.status, plan.decided_by) == ("rejected", "timeout")


async def test_plans_are_carried_across_continue_as_new(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = planner_formation()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(
            client, settings, formation, agent="lead", continue_as_new_after_turns=1
        )
        first = await chat(handle, plan_message(A))
        second = await chat(handle, plan_message(B))
        state = await handle.state()
        runs = await session_runs(client, handle)

    assert first.status == second.status == "completed"
    assert len(runs) >= 2
    assert [(p.turn_id, p.status) for p in state.plans] == [
        (first.turn_id, "completed"),
        (second.turn_id, "completed"),
    ]


async def _refusal(call: Awaitable[object]) -> str | None:
    try:
        await call
    except SessionRejected as err:
        return err.type
    return None
