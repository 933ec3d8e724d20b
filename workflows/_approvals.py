"""The approval gate of a session: which calls wait for a human, and for what answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import _options

with workflow.unsafe.imports_passed_through():
    from keel.approvals import Approval, ApprovalDecisionInput, DecidedBy
    from keel.contracts.tools import ValidateArgumentsInput, ValidateArgumentsResult
    from keel.formation import ApprovalsConfig
    from keel.messages import ToolCall
    from keel.names import Activities, Rejections
    from keel.tool_patterns import policy_for

DECIDED_KEPT = 100


class ApprovalGate:
    """Approvals of the current turn. Deterministic: workflow time and workflow uuids only."""

    def __init__(self, config: ApprovalsConfig, on_change: Callable[[], None]) -> None:
        self._config = config
        self._on_change = on_change
        """Called after every request and decision (the workflow mirrors pending ones)."""
        self._approvals: dict[str, Approval] = {}

    def requires(self, tool: str) -> bool:
        """Whether calls of `tool` wait for a decision: its own policy, else the first pattern's
        that matches it (`fs.write_*`), else the default."""
        return policy_for(tool, self._config.tools, self._config.default) == "always"

    def request(self, turn_id: str, call: ToolCall) -> Approval:
        """Open an approval for a tool call."""
        now = workflow.now()
        approval = Approval(
            id=str(workflow.uuid4()),
            turn_id=turn_id,
            call_id=call.id,
            tool=call.name,
            arguments=call.arguments,
            requested_at=now,
            expires_at=now + timedelta(seconds=self._config.timeout_s),
        )
        self._approvals[approval.id] = approval
        self._on_change()
        return approval

    def check(self, decision: ApprovalDecisionInput) -> Approval:
        """The approval a decision is for.

        Raises:
            ApplicationError: `UnknownApproval` or `ApprovalDecided`, so an
                update's caller learns why it was refused.
        """
        approval = self._approvals.get(decision.approval_id)
        if approval is None:
            raise ApplicationError(
                f"no approval {decision.approval_id!r} in this session",
                type=Rejections.UNKNOWN_APPROVAL,
            )
        if approval.status != "pending":
            # The decision that stands goes with the refusal, so a caller can say who
            # decided. A validator's refusal is never recorded in history.
            why = (
                "was cancelled with its turn"
                if approval.status == "cancelled"
                else f"was already decided: {approval.status}"
            )
            raise ApplicationError(
                f"approval {approval.id!r} {why}",
                approval.model_dump(
                    mode="json", include={"status", "decision", "decided_by", "reviewer"}
                ),
                type=Rejections.APPROVAL_DECIDED,
            )
        return approval

    async def check_arguments(self, decision: ApprovalDecisionInput, *, task_queue: str) -> None:
        """Refuse revised arguments that do not fit the tool's schema.

        A worker checks them: schemas live with the tools, never in history.

        Raises:
            ApplicationError: `InvalidArguments`, naming each problem.
        """
        if decision.arguments is None:
            return
        approval = self.check(decision)
        checked = await _options.run_activity(
            Activities.VALIDATE_ARGUMENTS,
            ValidateArgumentsInput(tool=approval.tool, arguments=decision.arguments),
            ValidateArgumentsResult,
            _options.VALIDATE_ARGUMENTS,
            task_queue=task_queue,
            summary=f"validate {approval.tool} arguments",
        )
        if checked.problems:
            raise ApplicationError(
                "; ".join(checked.problems), type=Rejections.INVALID_ARGUMENTS, non_retryable=True
            )

    def decide(self, decision: ApprovalDecisionInput, *, by: DecidedBy) -> Approval:
        """Record a decision (checked again here: an update may have awaited meanwhile)."""
        decided = self.check(decision).decided(decision, by=by, at=workflow.now())
        self._approvals[decided.id] = decided
        self._on_change()
        return decided

    async def wait(self, approval_id: str) -> Approval:
        """Wait for the decision, or apply `on_timeout` when the time is up."""
        try:
            await workflow.wait_condition(
                lambda: self._approvals[approval_id].status != "pending",
                timeout=timedelta(seconds=self._config.timeout_s),
            )
        except TimeoutError:
            # A decision and the timer can land in the same workflow task: the
            # decision, handled first, stands.
            if self._approvals[approval_id].status == "pending":
                timed_out = ApprovalDecisionInput(
                    approval_id=approval_id,
                    decision=self._config.on_timeout,
                    feedback=f"no decision within {self._config.timeout_s:g} s",
                )
                self.decide(timed_out, by="timeout")
        return self._approvals[approval_id]

    def cancel_turn(self, turn_id: str) -> list[Approval]:
        """Close the turn's pending approvals as cancelled (their calls never run); those closed."""
        closed = [a.cancelled(workflow.now()) for a in self.pending() if a.turn_id == turn_id]
        for approval in closed:
            self._approvals[approval.id] = approval
        if closed:
            self._on_change()
        return closed

    def pending(self) -> list[Approval]:
        """Approvals still waiting, oldest first."""
        return [a for a in self._approvals.values() if a.status == "pending"]

    def forget_old(self) -> None:
        """Keep pending approvals and the latest decided ones, so state stays small.

        Recent decisions are kept so a repeated answer gets "already decided"
        rather than "unknown".
        """
        decided = [k for k, a in self._approvals.items() if a.status != "pending"]
        for key in decided[:-DECIDED_KEPT]:
            del self._approvals[key]
