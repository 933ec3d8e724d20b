"""Turn control: which messages a session takes (`sessions.on_busy` and its limits), and
cancelling a queued or running turn, on request or because a newer message interrupts it
(`on_busy: interrupt | rollback`), with the transcript it leaves."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import _carry, _options
from workflows._approvals import ApprovalGate
from workflows._cancel import CancelRequest, TurnCancel
from workflows._loop import AgentLoop
from workflows._memory import SessionMemory
from workflows._patches import TURN_CONTROL_PATCH, patched
from workflows._queue import TurnQueue
from workflows._step import Publish
from workflows._turns import TurnBook

with workflow.unsafe.imports_passed_through():
    from keel.contracts.transcript import TruncateTranscriptInput, TruncateTranscriptResult
    from keel.events import ApprovalDecided, TurnCancelled
    from keel.messages import Usage
    from keel.names import Activities, Rejections
    from keel.session import (
        FINAL_TURN_STATUSES,
        CancelTurnInput,
        CancelTurnResult,
        SendMessageInput,
        StartSessionInput,
        TurnResult,
    )

INTERRUPTING = frozenset({"interrupt", "rollback"})
"""The `on_busy` policies under which a new message cancels the turns before it."""


class TurnControl:
    """Admits messages as turns, and cancels turns.

    A queued turn is taken off the queue and ends at once. A running turn is
    asked to stop (`TurnCancel`): its pending approvals close as cancelled now,
    and the turn ends once its call under way has stopped, when the workflow's
    main task calls `settle`.

    Args:
        input: the session's input.
        book: the session's turns.
        queue: the turns waiting.
        gate: the approval gate.
        cancel: the running turn's cancel.
        loop: the turn loop, whose messages a cancelled turn settles.
        memory: the session's memory steps (the summary's reach).
        current: the running turn's id, if one runs.
        publish: the workflow's event publisher.
        on_change: called when the queue changed (the workflow mirrors it).
    """

    def __init__(
        self,
        input: StartSessionInput,
        *,
        book: TurnBook,
        queue: TurnQueue,
        gate: ApprovalGate,
        cancel: TurnCancel,
        loop: AgentLoop,
        memory: SessionMemory,
        current: Callable[[], str | None],
        publish: Publish,
        on_change: Callable[[], None],
    ) -> None:
        self._input = input
        self._book = book
        self._queue = queue
        self._gate = gate
        self._cancel = cancel
        self._loop = loop
        self._memory = memory
        self._current = current
        self._publish = publish
        self._on_change = on_change

    def admit(self, input: SendMessageInput, *, closing: bool) -> None:
        """Refuse a message the session cannot take now (the `send_message` validator).

        Raises:
            ApplicationError: one of `keel.names.Rejections`, for the caller.
        """
        options = self._input.options
        self._check_user(input.user_id)
        if input.turn_id is not None and self._book.known(input.turn_id):
            raise ApplicationError(f"turn {input.turn_id} exists", type=Rejections.DUPLICATE_TURN)
        if closing:
            raise ApplicationError("the session is closed", type=Rejections.SESSION_CLOSED)
        if not input.text.strip():
            raise ApplicationError("the message is empty", type=Rejections.INVALID_MESSAGE)
        if len(input.text) > options.max_message_chars:
            raise ApplicationError(
                f"the message has {len(input.text)} characters;"
                f" the limit is {options.max_message_chars}",
                type=Rejections.MESSAGE_TOO_LONG,
            )
        if options.on_busy == "reject" and (self._current() or self._queue):
            raise ApplicationError("a turn is already running", type=Rejections.SESSION_BUSY)
        if (
            len(self._queue) >= options.max_queued_turns
            or self._queue.bytes + len(input.text) > _carry.QUEUED_BYTES_MAX
        ):
            raise ApplicationError(
                f"{len(self._queue)} messages are waiting for their turn; try again later",
                type=Rejections.QUEUE_FULL,
            )

    def check(self, input: CancelTurnInput) -> TurnResult:
        """The turn a cancel is for, if it may still be cancelled (the `cancel_turn` validator).

        Raises:
            ApplicationError: `SessionNotFound` for another user's session, `UnknownTurn`,
                or `TurnEnded` for a turn that ended.
        """
        self._check_user(input.user_id)
        turn = self._book.turns.get(input.turn_id)
        if turn is None and not self._book.known(input.turn_id):
            raise ApplicationError(
                f"no turn {input.turn_id!r} in this session", type=Rejections.UNKNOWN_TURN
            )
        if turn is None or turn.status in FINAL_TURN_STATUSES:
            ended = f": {turn.status}" if turn else ""
            raise ApplicationError(
                f"turn {input.turn_id!r} has already ended{ended}", type=Rejections.TURN_ENDED
            )
        return turn

    def _check_user(self, user_id: str | None) -> None:
        if user_id is not None and user_id != self._input.user_id:
            # The same answer as for a session that does not exist: ids are not confirmed.
            raise ApplicationError("no such session", type=Rejections.SESSION_NOT_FOUND)

    def cancel(self, input: CancelTurnInput) -> CancelTurnResult:
        """Cancel a turn (the `cancel_turn` update); a second cancel of it changes nothing."""
        turn = self.check(input)
        if not patched(TURN_CONTROL_PATCH):  # pragma: no cover - no history has this update
            raise ApplicationError("this session cannot cancel turns", non_retryable=True)
        rollback = input.rollback
        if rollback is None:
            rollback = self._input.options.on_busy == "rollback"
        self._cancel_one(turn, CancelRequest(turn.turn_id, rollback=rollback, interrupted_by=None))
        return CancelTurnResult(turn_id=turn.turn_id, status=turn.status)

    def interrupt(self, new_turn_id: str) -> None:
        """Under `on_busy: interrupt | rollback`, cancel every turn before a new message."""
        on_busy = self._input.options.on_busy
        if on_busy not in INTERRUPTING:
            return
        turns = [self._book.turns[turn_id] for turn_id in self._queue.ids()]
        current = self._current()
        # A turn that has its answer (it is storing memories) finishes.
        if current is not None and self._book.turns[current].status not in FINAL_TURN_STATUSES:
            turns.insert(0, self._book.turns[current])
        if not turns or not patched(TURN_CONTROL_PATCH):
            return
        for turn in turns:
            request = CancelRequest(
                turn.turn_id, rollback=on_busy == "rollback", interrupted_by=new_turn_id
            )
            self._cancel_one(turn, request)

    def _cancel_one(self, turn: TurnResult, request: CancelRequest) -> None:
        if turn.status == "queued":
            self._queue.remove(turn.turn_id)
            turn.status = "cancelled"
            # It never started, so it has nothing to roll back: this is its only event.
            self._publish(_cancelled_event(request, rolled_back=False), turn.turn_id)
            self._on_change()
            return
        assert turn.turn_id == self._current(), "only the running turn is neither queued nor ended"
        if not self._cancel.ask(request):
            return
        for approval in self._gate.cancel_turn(turn.turn_id):
            assert approval.decision is not None and approval.decided_by is not None
            self._publish(
                ApprovalDecided(
                    approval_id=approval.id,
                    call_id=approval.call_id,
                    tool=approval.tool,
                    decision=approval.decision,
                    decided_by=approval.decided_by,
                    feedback=approval.feedback,
                ),
                turn.turn_id,
            )

    async def settle(self, turn: TurnResult) -> None:
        """End the running turn as cancelled, once its code has stopped.

        Rolled back: the workflow forgets the turn's messages and the store deletes
        them, and the next turn takes their seqs, so the transcript has no gap.
        Kept: every tool call left without a result gets one saying so (vendors
        refuse a call without a result), and the store gets what it lacks. Either
        way the store drops what lies past the transcript the workflow keeps (an
        answer the cancelled model call wrote as it was cancelled).
        """
        request = self._cancel.request
        assert request is not None and request.turn_id == turn.turn_id
        if request.rollback:
            from_seq = self._loop.rollback()
            self._memory.summary_upto = min(self._memory.summary_upto, from_seq)
        else:
            self._loop.close_calls(turn.turn_id)
            self._loop.unsynced = await self._book.sync(
                self._input, self._loop.unsynced, owner=self._memory.scope
            )
            from_seq = self._loop.next_seq
        await self._truncate(from_seq)
        turn.status = "cancelled"
        self._publish(
            _cancelled_event(request, rolled_back=request.rollback, turn=turn), turn.turn_id
        )

    async def _truncate(self, from_seq: int) -> None:
        try:
            await _options.run_activity(
                Activities.TRUNCATE_TRANSCRIPT,
                TruncateTranscriptInput(session=workflow.info().workflow_id, from_seq=from_seq),
                TruncateTranscriptResult,
                _options.SEED_TRANSCRIPT,
                task_queue=self._input.activities_task_queue,
                summary=f"cut the transcript from seq {from_seq}",
            )
        except ActivityError as err:
            # The model never reads past the seq it is given, and later turns write over
            # these seqs: only a read of the messages shows them meanwhile.
            workflow.logger.warning("transcript not cut at seq %d: %s", from_seq, err.cause)


def _cancelled_event(
    request: CancelRequest, *, rolled_back: bool, turn: TurnResult | None = None
) -> TurnCancelled:
    return TurnCancelled(
        reason="interrupted" if request.interrupted_by else "cancelled",
        interrupted_by=request.interrupted_by,
        rolled_back=rolled_back,
        usage=turn.usage if turn else Usage(),
    )
