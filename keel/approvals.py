"""Approval gates: the wire shapes of a request for a human decision and of the decision."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Decision = Literal["approve", "reject", "revise"]
ApprovalStatus = Literal["pending", "approved", "rejected", "revised", "cancelled"]
DecidedBy = Literal["signal", "update", "timeout", "cancel"]
"""`cancel`: the turn was cancelled while the call waited (its approval closes as `cancelled`,
with decision `reject`: the call never runs)."""
CANCELLED_FEEDBACK = "the turn was cancelled"
REVIEWER_MAX_LENGTH = 128

_STATUS_OF: dict[str, ApprovalStatus] = {
    "approve": "approved",
    "reject": "rejected",
    "revise": "revised",
}


class ApprovalDecisionInput(BaseModel):
    """A human's answer: input of the `approval` signal and the `respond_to_approval` update."""

    approval_id: str = Field(min_length=1, max_length=64)
    decision: Decision
    feedback: str | None = Field(default=None, max_length=10_000)
    """Told to the model: why a call was rejected, or what to change."""
    arguments: dict[str, Any] | None = None
    """With `revise`: the arguments to run the tool with instead."""
    reviewer: str | None = Field(default=None, min_length=1, max_length=REVIEWER_MAX_LENGTH)
    """Who decided, as the caller names them (a console's user, the `X-User-Id`). Not a
    secret, but recorded in history: capped in length."""
    key_name: str | None = Field(default=None, min_length=1, max_length=REVIEWER_MAX_LENGTH)
    """The name of the API key the decision came with (set by the API, never by the body;
    None in dev mode and for signals)."""

    @model_validator(mode="after")
    def _revise_says_how(self) -> ApprovalDecisionInput:
        if self.decision == "revise" and self.feedback is None and self.arguments is None:
            raise ValueError("revise needs feedback, arguments, or both")
        if self.decision != "revise" and self.arguments is not None:
            raise ValueError("arguments go with decision 'revise' only")
        return self


class Approval(BaseModel):
    """A tool call waiting for (or past) a human decision."""

    id: str
    turn_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: ApprovalStatus = "pending"
    requested_at: datetime
    expires_at: datetime
    decision: Decision | None = None
    feedback: str | None = None
    revised_arguments: dict[str, Any] | None = None
    decided_by: DecidedBy | None = None
    decided_at: datetime | None = None
    """When the decision was recorded (workflow time); None for decisions of older builds."""
    reviewer: str | None = None
    """Who decided, when the decision named them."""
    key_name: str | None = None
    """The API key the decision came with, by its configured name."""
    arguments_elided: bool = False
    """Set where a listing leaves out large arguments (the session's memo); ask the session."""

    def cancelled(self, at: datetime | None = None) -> Approval:
        """This approval closed with its turn (at `at`): the call never runs."""
        return self.model_copy(
            update={
                "status": "cancelled",
                "decision": "reject",
                "feedback": CANCELLED_FEEDBACK,
                "decided_by": "cancel",
                "decided_at": at,
            }
        )

    def decided(
        self, decision: ApprovalDecisionInput, by: DecidedBy, at: datetime | None = None
    ) -> Approval:
        """This approval with `decision` applied, recorded at `at`."""
        return self.model_copy(
            update={
                "status": _STATUS_OF[decision.decision],
                "decision": decision.decision,
                "feedback": decision.feedback,
                "revised_arguments": decision.arguments,
                "decided_by": by,
                "decided_at": at,
                "reviewer": decision.reviewer,
                "key_name": decision.key_name,
            }
        )

    def record(self) -> DecisionRecord:
        """The decision as the call's tool message keeps it in the transcript."""
        return DecisionRecord.model_validate(self.model_dump(include=_RECORDED))

    @classmethod
    def from_record(
        cls, record: DecisionRecord, *, turn_id: str, call_id: str, tool: str, arguments: Any
    ) -> Approval:
        """A decided approval read back from the transcript: its call's message says the rest."""
        return cls(
            **record.model_dump(),
            turn_id=turn_id,
            call_id=call_id,
            tool=tool,
            arguments=arguments if isinstance(arguments, dict) else {},
        )


class DecisionRecord(BaseModel):
    """A decided approval, on the tool message of the call it gated: the audit trail that
    outlives the session's state. The call's own arguments are its assistant message's."""

    id: str
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime
    decision: Decision | None = None
    feedback: str | None = None
    revised_arguments: dict[str, Any] | None = None
    decided_by: DecidedBy | None = None
    decided_at: datetime | None = None
    reviewer: str | None = None
    key_name: str | None = None


_RECORDED = set(DecisionRecord.model_fields)
