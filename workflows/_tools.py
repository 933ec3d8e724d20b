"""Tool calls of a turn: approval gates first, then the tool activity, errors as results."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from workflows import _options
from workflows._patches import TOOLS_ON_SESSION_QUEUE_PATCH, patched

with workflow.unsafe.imports_passed_through():
    from keel.approvals import Approval
    from keel.contracts.tools import CallToolInput, CallToolResult
    from keel.events import (
        ApprovalDecided,
        ApprovalRequested,
        ToolCallEvent,
        ToolResultEvent,
    )
    from keel.messages import ToolCall
    from keel.names import Activities
    from keel.session import StartSessionInput, TurnResult
    from keel.tool_patterns import allowed

from workflows._approvals import ApprovalGate
from workflows._cancel import TurnCancel
from workflows._delegation import delegate
from workflows._memory import SessionMemory
from workflows._messaging import MESSAGING_TOOLS, run_messaging_tool
from workflows._step import Publish, Step

GLIMPSE_CHARS = 200
"""How much of a tool result its `tool.result` event shows."""


class ToolRunner:
    """Runs a model step's tool calls for a session workflow."""

    def __init__(
        self,
        input: StartSessionInput,
        gate: ApprovalGate,
        publish: Publish,
        memory: SessionMemory,
        cancel: TurnCancel,
    ) -> None:
        self._input = input
        self._gate = gate
        self._publish = publish
        self._memory = memory
        self._cancel = cancel
        """Checked after every call: a cancelled call comes back as a failed one."""

    async def run(
        self, turn: TurnResult, step: Step, calls: list[ToolCall]
    ) -> AsyncIterator[tuple[ToolCall, CallToolResult]]:
        """Run a model step's calls in order, yielding each result.

        Gated calls are all asked for up front, so a reviewer sees them together.
        """
        approvals: dict[str, Approval] = {}
        for call in calls:
            self._publish(
                ToolCallEvent(call_id=call.id, tool=call.name, arguments=call.arguments),
                turn.turn_id,
            )
            if self._gate.requires(call.name):
                approval = approvals[call.id] = self._gate.request(turn.turn_id, call)
                self._publish(
                    ApprovalRequested(
                        approval_id=approval.id,
                        call_id=call.id,
                        tool=call.name,
                        arguments=call.arguments,
                        expires_at=approval.expires_at,
                    ),
                    turn.turn_id,
                )
        for call in calls:
            pending = approvals.get(call.id)
            if pending is None:
                result = await self._call_tool(step, call)
            else:
                turn.status = "awaiting_approval"
                approval = await self._gate.wait(pending.id)
                turn.status = "awaiting_approval" if self._gate.pending() else "running"
                assert approval.decision is not None and approval.decided_by is not None
                self._publish(
                    ApprovalDecided(
                        approval_id=approval.id,
                        call_id=call.id,
                        tool=call.name,
                        decision=approval.decision,
                        decided_by=approval.decided_by,
                        feedback=approval.feedback,
                        arguments=approval.revised_arguments,
                        reviewer=approval.reviewer,
                        key_name=approval.key_name,
                        decided_at=approval.decided_at,
                    ),
                    turn.turn_id,
                )
                result = await self._call_approved(step, call, approval)
                # The transcript keeps the decision with the call's result: the audit trail.
                result = result.model_copy(update={"approval": approval.record()})
            self._cancel.check(turn.turn_id)
            self._publish(
                ToolResultEvent(
                    call_id=call.id,
                    tool=call.name,
                    is_error=result.is_error,
                    # A large result stayed out of history: its content is already a glimpse.
                    glimpse=result.content if result.ref else result.content[:GLIMPSE_CHARS],
                    ref=result.ref,
                ),
                turn.turn_id,
            )
            yield call, result

    async def _call_approved(
        self, step: Step, call: ToolCall, approval: Approval
    ) -> CallToolResult:
        """What a decided call gives the model: the tool's result, or the reviewer's word."""
        feedback = f" Reviewer: {approval.feedback}" if approval.feedback else ""
        if approval.decision == "reject":
            return CallToolResult(content=f"The user rejected this call.{feedback}", is_error=True)
        if approval.decision == "revise" and approval.revised_arguments is None:
            return CallToolResult(
                content=f"The user asked for changes before this runs.{feedback}", is_error=True
            )
        arguments = approval.revised_arguments or call.arguments
        revised = call.model_copy(update={"arguments": arguments})
        result = await self._call_tool(step, revised)
        if approval.decision == "revise":
            note = f"(Run with arguments revised by the user: {arguments}.{feedback})\n"
            result = result.model_copy(update={"content": note + result.content})
        return result

    async def _call_tool(self, step: Step, call: ToolCall) -> CallToolResult:
        if call.name in self._input.agent.routes:
            return await delegate(self._input, step, call, self._publish)
        if self._memory.handles(call.name):
            return await self._memory.call_builtin(step, call)
        if not allowed(call.name, self._input.agent.tools):
            return CallToolResult(
                content=f"tool {call.name!r} is not available to agent {self._input.agent.name!r}",
                is_error=True,
            )
        if call.name in MESSAGING_TOOLS:
            return await run_messaging_tool(self._input, step, call)
        try:
            return await _options.run_activity(
                Activities.CALL_TOOL,
                CallToolInput(
                    session=workflow.info().workflow_id,
                    turn_id=step.turn_id,
                    call_id=call.id,
                    name=call.name,
                    arguments=call.arguments,
                    step=step.number,
                ),
                CallToolResult,
                _options.TOOL,
                task_queue=self._tool_queue(),
                summary=f"tool {call.name}",
            )
        except ActivityError as err:
            # A tool that times out or keeps failing is the model's problem
            # to work around, not a reason to fail the turn.
            return CallToolResult(content=f"tool failed: {error_text(err)}", is_error=True)

    def _tool_queue(self) -> str:
        """The session's own queue: the worker completing the workflow task that schedules
        the call takes it in the reply, with no matching (every worker loads the tools)."""
        if patched(TOOLS_ON_SESSION_QUEUE_PATCH):
            return workflow.info().task_queue
        return self._input.activities_task_queue


def error_text(err: ActivityError) -> str:
    """The innermost failure's message: what went wrong, not how it was wrapped."""
    cause: BaseException = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if isinstance(cause, FailureError) else str(cause)
