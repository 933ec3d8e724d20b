"""The turns of a session: their results, the ids of older ones, and what the memo mirrors."""

from __future__ import annotations

from collections import deque

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import _carry, _options
from workflows._approvals import ApprovalGate
from workflows._model import chunks
from workflows._patches import (
    MIRROR_ON_CHANGE_PATCH,
    PENDING_ATTR_IF_STARTED_PATCH,
    PENDING_ATTR_PATCH,
    SUMMARY_PATCH,
    SYNC_FAILED_TURN_PATCH,
    patched,
)
from workflows._plans import PlanBook
from workflows._tools import error_text

with workflow.unsafe.imports_passed_through():
    from keel.approvals import Approval
    from keel.contracts.llm import SeedTranscriptInput, SeedTranscriptResult
    from keel.contracts.memory import MemoryScope
    from keel.messages import Message, Usage
    from keel.names import Activities
    from keel.session import (
        FINAL_TURN_STATUSES,
        SUMMARY_MEMO,
        CarriedState,
        SessionSummary,
        StartSessionInput,
        TurnResult,
        TurnSummary,
    )
    from keel.temporal import PENDING_APPROVALS_ATTR

TURNS_KEPT = 50
"""Ended turns whose results the workflow keeps; older ones are answered from the store."""
TURNS_IN_SUMMARY = 10
ERROR_CHARS_IN_SUMMARY = 200
SUMMARY_BYTES_MAX = 8 * 1024
"""Temporal refuses a memo past 32 KB (and the session's metadata shares it): past this
size the summary drops approval arguments, then turns, so an upsert can never fail."""


class TurnError(Exception):
    """A turn that ends without an answer for a reason of its own (not an activity failure)."""


def failure_of(err: ActivityError | TurnError | ApplicationError) -> str:
    """What a failed turn reports: the innermost reason."""
    return error_text(err) if isinstance(err, ActivityError) else str(err)


class TurnBook:
    """Results of a session's recent turns, ids of older ones, and totals.

    Args:
        carried: what the previous run handed over (empty for a new session).
        gate: the session's approval gate, whose old decisions are forgotten with old turns.
    """

    def __init__(self, carried: CarriedState, gate: ApprovalGate, plans: PlanBook) -> None:
        self._gate = gate
        self._plans = plans
        self.turns: dict[str, TurnResult] = {t.turn_id: t for t in carried.recent_turns}
        self.turns.update(
            {q.turn_id: TurnResult(turn_id=q.turn_id, status="queued") for q in carried.queued}
        )
        self.turn_count = carried.turn_count
        self.usage: Usage = carried.usage
        self._counted_upto_seq = carried.next_seq
        """Messages from this seq on hold tokens `usage` does not count yet."""
        self._mirrored_queue: list[str] | None = None
        """The queued turns the memo lists; None until this run upserts it."""
        self._mirrored_pending = 0
        """`KeelPendingApprovals` as last upserted (a run starts with none pending)."""
        self._older: deque[str] = deque(maxlen=_carry.TURN_IDS_KEPT)
        self._older_set: set[str] = set()
        for turn_id in carried.turn_ids:
            self._remember(turn_id)

    def queued(self, turn_id: str) -> None:
        """A new turn waits in the queue."""
        self.turns[turn_id] = TurnResult(turn_id=turn_id, status="queued")

    def known(self, turn_id: str) -> bool:
        """Whether the session has had a turn of this id (a retried message)."""
        return turn_id in self.turns or turn_id in self._older_set

    def ended(self, turn: TurnResult, *, next_seq: int) -> None:
        """Count an ended turn, and let the oldest results go so state stays small.

        Args:
            turn: the turn that ended.
            next_seq: the seq the session's next message takes.
        """
        self.turn_count += 1
        self.usage = self.usage + turn.usage
        self._counted_upto_seq = next_seq
        while len(self.turns) > TURNS_KEPT:
            oldest = next(iter(self.turns))
            if self.turns[oldest].status not in FINAL_TURN_STATUSES:
                break
            del self.turns[oldest]
            self._remember(oldest)
        self._gate.forget_old()

    def ended_turns(self) -> list[TurnResult]:
        """Turns of this run that ended, oldest first."""
        return [t for t in self.turns.values() if t.status in FINAL_TURN_STATUSES]

    def turn_ids(self) -> list[str]:
        """Ids of every turn that ended, newest last, at most `TURN_IDS_KEPT`."""
        ended = [t.turn_id for t in self.ended_turns()]
        return [*self._older, *ended][-_carry.TURN_IDS_KEPT :]

    def mirror_ended(self, turn: TurnResult, pending: list[Approval], queued: list[str]) -> None:
        """`mirror` after a turn, unless the store and the memo already tell all of it.

        A completed turn's answer and tokens are in the store; a failed or
        cancelled one's status, and a changed queue, are not.
        """
        if (
            turn.status == "completed"
            and queued[:TURNS_IN_SUMMARY] == self._mirrored_queue
            and patched(MIRROR_ON_CHANGE_PATCH)
        ):
            return
        self.mirror(pending, queued)

    def mirror(self, pending: list[Approval], queued: list[str]) -> None:
        """Upsert the session's summary into its memo, which reads use when no worker runs."""
        if not patched(SUMMARY_PATCH):
            return
        self._mirrored_queue = queued[:TURNS_IN_SUMMARY]
        summary = SessionSummary(
            pending_approvals=pending,
            usage=self.usage,
            usage_from_seq=self._counted_upto_seq,
            turn_count=self.turn_count,
            turns=[
                TurnSummary(
                    turn_id=t.turn_id,
                    status=t.status,
                    usage=t.usage,
                    error=t.error[:ERROR_CHARS_IN_SUMMARY] if t.error else None,
                )
                for t in self.ended_turns()[-TURNS_IN_SUMMARY:]
            ],
            queued_turns=queued[:TURNS_IN_SUMMARY],
        )
        summary.plans, summary.plans_elided = self._plans.summary()
        workflow.upsert_memo({SUMMARY_MEMO: _within_limit(summary)})
        self._mirror_pending_count(len(pending))

    def _mirror_pending_count(self, count: int) -> None:
        """Set `KeelPendingApprovals` when the count changed: the inbox finds sessions by it.

        A search attribute rather than the memo: visibility filters on it, so the
        inbox lists only sessions that wait, in one call whatever the tenant's size.
        """
        if count == self._mirrored_pending or not patched(PENDING_ATTR_PATCH):
            return
        if (
            patched(PENDING_ATTR_IF_STARTED_PATCH)
            and PENDING_APPROVALS_ATTR not in workflow.info().typed_search_attributes
        ):
            return
        self._mirrored_pending = count
        workflow.upsert_search_attributes([PENDING_APPROVALS_ATTR.value_set(count)])

    async def sync(
        self,
        session: StartSessionInput,
        unsynced: list[Message],
        *,
        owner: MemoryScope | None = None,
    ) -> list[Message]:
        """Write messages the store may lack; what is still unsynced after (all, on failure).

        Args:
            session: the session's input.
            unsynced: the messages.
            owner: whose session it is, registered with the messages (a turn cancelled
                before its first model call, which registers it, left the store without).
        """
        if not unsynced or not patched(SYNC_FAILED_TURN_PATCH):
            return unsynced
        try:
            for chunk in chunks(unsynced, _SYNC_CHUNK_BYTES):
                await _options.run_activity(
                    Activities.SEED_TRANSCRIPT,
                    SeedTranscriptInput(
                        session=workflow.info().workflow_id, messages=chunk, owner=owner
                    ),
                    SeedTranscriptResult,
                    _options.SEED_TRANSCRIPT,
                    task_queue=session.activities_task_queue,
                    summary=f"store {len(chunk)} messages of a failed turn",
                )
        except ActivityError as err:
            workflow.logger.warning("messages of a failed turn stay unstored: %s", err.cause)
            return unsynced
        return []

    def _remember(self, turn_id: str) -> None:
        if len(self._older) == self._older.maxlen:
            self._older_set.discard(self._older[0])
        self._older.append(turn_id)
        self._older_set.add(turn_id)


def _within_limit(summary: SessionSummary) -> SessionSummary:
    """`summary`, cut down to `SUMMARY_BYTES_MAX` as JSON."""

    def size() -> int:
        return len(summary.model_dump_json())

    while size() > SUMMARY_BYTES_MAX and summary.plans:
        summary.plans = summary.plans[1:]
        summary.plans_elided = True
    if size() > SUMMARY_BYTES_MAX:
        summary.pending_approvals = [
            a.model_copy(update={"arguments": {}, "arguments_elided": True})
            for a in summary.pending_approvals
        ]
    while size() > SUMMARY_BYTES_MAX and (summary.turns or summary.queued_turns):
        summary.turns = summary.turns[1:]
        summary.queued_turns = summary.queued_turns[:-1]
    if size() > SUMMARY_BYTES_MAX:
        summary.pending_approvals = summary.pending_approvals[:8]
        summary.approvals_elided = True
    return summary


_SYNC_CHUNK_BYTES = 256 * 1024
