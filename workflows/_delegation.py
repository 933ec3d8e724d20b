"""Delegation: a coordinator hands a task to a specialist, run as a child workflow."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

from workflows._patches import STEP_IN_CHILD_ID_PATCH, USAGE_ROLLUP_PATCH, patched
from workflows._step import Publish, Step

with workflow.unsafe.imports_passed_through():
    from keel.contracts.llm import ToolSpec
    from keel.contracts.tools import CallToolResult
    from keel.events import Handoff
    from keel.messages import ToolCall
    from keel.names import SESSION_WORKFLOW
    from keel.session import AgentSnapshot, SessionResult, StartSessionInput


_TASK = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "The task, in full."}},
    "required": ["message"],
}


def delegation_specs(agent: AgentSnapshot, team: dict[str, AgentSnapshot]) -> list[ToolSpec]:
    """One tool per route, named after the specialist and described by its description."""
    return [
        ToolSpec(
            name=name,
            description=team[name].description or f"Hand the task to the {name} agent.",
            parameters=_TASK,
        )
        for name in agent.routes
        if name in team
    ]


async def delegate(
    session: StartSessionInput, step: Step, call: ToolCall, publish: Publish
) -> CallToolResult:
    """Run the specialist `call.name` on `call.arguments["message"]`; its answer is the result.

    The `handoff` event goes out as the child starts, naming its workflow; a call refused
    here (too deep, no message) hands nothing over.

    A child workflow rather than an activity: the specialist's own steps, tool
    calls and approvals are durable and show under the session in the Temporal UI.
    """
    limit = session.options.max_delegation_depth
    if session.depth >= limit:
        return CallToolResult(
            content=f"cannot delegate to {call.name!r}: the delegation depth limit ({limit}) "
            "is reached; answer without it",
            is_error=True,
        )
    task = call.arguments.get("message")
    if not isinstance(task, str) or not task.strip():
        return CallToolResult(content="delegation needs a non-empty 'message'", is_error=True)
    child = session.model_copy(
        update={
            "session_id": "",
            "agent": session.team[call.name],
            "depth": session.depth + 1,
            "initial_message": task,
            "close_when_idle": True,
            "carried": None,
        }
    )
    if patched(STEP_IN_CHILD_ID_PATCH):
        child_id = step.key(call)
    else:
        child_id = f"{workflow.info().workflow_id}/{step.turn_id}/{call.id}"
    publish(
        Handoff(
            from_agent=session.agent.name,
            to_agent=call.name,
            call_id=call.id,
            child_workflow_id=child_id,
        ),
        step.turn_id,
    )
    try:
        result = await workflow.execute_child_workflow(
            SESSION_WORKFLOW,
            child,
            id=child_id,
            result_type=SessionResult,
            static_summary=f"{session.agent.name} delegates to {call.name}",
        )
    except ChildWorkflowError as err:
        return CallToolResult(content=f"{call.name} failed: {err.message}", is_error=True)
    # The child's whole session: its failed turns and its own delegations spent tokens too.
    usage = result.usage if patched(USAGE_ROLLUP_PATCH) else None
    turn = result.last_turn
    if turn is None or turn.message is None:
        reason = turn.error if turn and turn.error else "no answer"
        return CallToolResult(
            content=f"{call.name} could not answer: {reason}", is_error=True, usage=usage
        )
    return CallToolResult(content=turn.message.content, usage=usage)
