"""A request to cancel the running turn, and the points where the turn's code stops for it.

An update asks; the workflow's main task runs the turn. The request cancels that
task, which cancels what it awaits: an activity (Temporal asks the worker to stop
it, and the turn goes on once it has), a child workflow, or an approval's wait.
Some of those come back as a failure the turn would otherwise work around (a tool
that failed is a result for the model), so the turn's code also checks the request
after every model and tool call, and stops there.

Nothing here issues a command until a turn is cancelled: histories without a
cancel replay the same.
"""

from __future__ import annotations

import asyncio
from typing import Any


class TurnCancelled(Exception):
    """Raised where the running turn's code stops for its cancel."""


class CancelRequest:
    """What a cancel asks of its turn (a plain class, as `_options.ActivityOptions` says why).

    Args:
        turn_id: The turn to stop.
        rollback: Drop the turn's messages from the transcript.
        interrupted_by: The turn of the newer message that cancels it, if one does.
    """

    __slots__ = ("interrupted_by", "rollback", "turn_id")

    def __init__(self, turn_id: str, *, rollback: bool, interrupted_by: str | None) -> None:
        self.turn_id = turn_id
        self.rollback = rollback
        self.interrupted_by = interrupted_by


class TurnCancel:
    """The running turn's cancel, if one was asked for."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self.request: CancelRequest | None = None

    def turn_started(self) -> None:
        """Called by the task that runs the turn, as it starts it."""
        self._task = asyncio.current_task()
        self.request = None

    def ask(self, request: CancelRequest) -> bool:
        """Stop the running turn; False if a cancel of it was asked for already."""
        if self.request is not None:
            return False
        self.request = request
        assert self._task is not None, "a turn runs"
        self._task.cancel()
        return True

    def of(self, turn_id: str) -> CancelRequest | None:
        """The cancel asked of `turn_id`, if any."""
        request = self.request
        return request if request is not None and request.turn_id == turn_id else None

    def check(self, turn_id: str) -> None:
        """Stop here if `turn_id` is being cancelled.

        Raises:
            TurnCancelled: it is.
        """
        if self.of(turn_id) is not None:
            raise TurnCancelled(turn_id)

    def turn_ended(self) -> None:
        """Forget the request once the turn has ended.

        The task's count of cancels asked of it goes back down: timeouts (an
        approval's) read it to tell their own cancel from another's.
        """
        if self.request is not None and self._task is not None:
            self._task.uncancel()
        self.request = None
