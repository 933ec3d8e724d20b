"""Every name Temporal knows Keel by, in one place: workflows, updates, queries, signals,
activities, and the error types a session's handlers reject with.

These names are recorded in workflow histories: once released they never change,
or sessions in flight could not be replayed (see docs/changing-workflows.md).
"""

from __future__ import annotations

from typing import Final

SESSION_WORKFLOW: Final = "keel.Session"


class Updates:
    """Updates of `SessionWorkflow`."""

    SEND_MESSAGE: Final = "send_message"
    CHAT: Final = "chat"
    WAIT_TURN: Final = "wait_turn"
    CLOSE: Final = "close"
    RESPOND_TO_APPROVAL: Final = "respond_to_approval"
    CANCEL_TURN: Final = "cancel_turn"
    DECIDE_PLAN: Final = "decide_plan"


class Queries:
    """Queries of `SessionWorkflow`."""

    STATE: Final = "state"


class Signals:
    """Signals of `SessionWorkflow`."""

    APPROVAL: Final = "approval"
    TOPIC_MESSAGE: Final = "topic_message"


class Activities:
    """Activities the session workflow runs."""

    CALL_MODEL: Final = "keel.llm.call_model"
    CALL_TOOL: Final = "keel.tools.call_tool"
    VALIDATE_ARGUMENTS: Final = "keel.tools.validate_arguments"
    RECALL: Final = "keel.memory.recall"
    WRITE_MEMORIES: Final = "keel.memory.write"
    READ_REFERENCE: Final = "keel.memory.read_reference"
    SUMMARIZE: Final = "keel.memory.summarize"
    EXTRACT_FACTS: Final = "keel.memory.extract_facts"
    ASK_SESSION: Final = "keel.agents.ask_session"
    PUBLISH: Final = "keel.agents.publish"
    SEED_TRANSCRIPT: Final = "keel.llm.seed_transcript"
    TRUNCATE_TRANSCRIPT: Final = "keel.transcript.truncate"


class Rejections:
    """`ApplicationError` types of a session's update validators and handlers.

    Callers map them by type, never by message text: the API to HTTP problems,
    `ask_session` to tool errors.
    """

    SESSION_NOT_FOUND: Final = "SessionNotFound"
    SESSION_CLOSED: Final = "SessionClosed"
    SESSION_BUSY: Final = "SessionBusy"
    QUEUE_FULL: Final = "SessionQueueFull"
    DUPLICATE_TURN: Final = "DuplicateTurn"
    INVALID_MESSAGE: Final = "InvalidMessage"
    MESSAGE_TOO_LONG: Final = "MessageTooLong"
    UNKNOWN_TURN: Final = "UnknownTurn"
    TURN_ENDED: Final = "TurnEnded"
    UNKNOWN_APPROVAL: Final = "UnknownApproval"
    APPROVAL_DECIDED: Final = "ApprovalDecided"
    INVALID_ARGUMENTS: Final = "InvalidArguments"
    UNKNOWN_PLAN: Final = "UnknownPlan"
    PLAN_DECIDED: Final = "PlanDecided"
    INVALID_PLAN: Final = "InvalidPlan"


class ActivityErrors:
    """`ApplicationError` types activities raise that the workflow acts on."""

    PREFIX_MISSING: Final = "TranscriptPrefixMissing"
    INVALID_STRUCTURED_OUTPUT: Final = "InvalidStructuredOutput"
    CIRCUIT_OPEN: Final = "CircuitOpen"
    """The model's circuit breaker is open: no call reaches its provider for now."""
