"""Where a tool call comes from: a model step of a turn, and who waits on that turn."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from keel.contracts.tools import call_key
    from keel.events import EventPayload
    from keel.messages import ToolCall

Publish = Callable[[EventPayload, "str | None"], None]
"""The workflow's `_publish`: a step event and the turn it belongs to."""


class Step:
    """A model step of a turn (a plain class, as `_options.ActivityOptions` says why).

    Args:
        turn_id: The turn.
        number: The step's number in the turn, from 1.
        ask_chain: Workflow ids of the sessions waiting on this turn through `ask_session`.
    """

    __slots__ = ("ask_chain", "number", "turn_id")

    def __init__(self, turn_id: str, number: int, ask_chain: tuple[str, ...] = ()) -> None:
        self.turn_id = turn_id
        self.number = number
        self.ask_chain = ask_chain

    def key(self, call: ToolCall) -> str:
        """The call's name in the session, unique even when a vendor repeats call ids.

        Idempotency keys, references and child workflow ids are built from it.
        """
        return call_key(workflow.info().workflow_id, self.turn_id, self.number, call.id)
