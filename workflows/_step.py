"""Where a tool call comes from: a model step of a turn, and who waits on that turn."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from keel.contracts.tools import call_key
    from keel.messages import ToolCall


@dataclass(frozen=True)
class Step:
    """A model step of a turn."""

    turn_id: str
    number: int
    ask_chain: tuple[str, ...] = ()
    """Workflow ids of the sessions waiting on this turn through `ask_session`."""

    def key(self, call: ToolCall) -> str:
        """The call's name in the session, unique even when a vendor repeats call ids.

        Idempotency keys, references and child workflow ids are built from it.
        """
        return call_key(workflow.info().workflow_id, self.turn_id, self.number, call.id)
