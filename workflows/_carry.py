"""What one run of a session hands the next at continue-as-new, bounded by bytes.

The carried state is the new run's input: one payload, which Temporal refuses
past 2 MB. Each part is bounded here or where it grows (the queue, by the
`send_message` validator), so a hand-over can never fail for its size.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamState

    from keel.session import TurnResult

QUEUED_BYTES_MAX = 1024 * 1024
"""Queued messages of a session, in all, as JSON; more are refused (`session-queue-full`)."""
EVENTS_CARRIED = 100
"""Step events carried into the next run, so a client that dropped just before
continue-as-new still resumes without a gap."""
EVENT_BYTES_CARRIED = 256 * 1024
"""...and at most this many bytes of them: a few long answers would pass the count alone."""
TURNS_CARRIED = 10
"""Ended turns handed to the next run: a client may ask for one just after the hand-over."""
TURN_BYTES_CARRIED = 64 * 1024
"""...and at most this many bytes of them; older turns are answered from the store."""
TURN_IDS_KEPT = 1000
"""Ids of earlier turns, so a retried message (same turn id) is refused, not run again."""


def stream_tail(stream: WorkflowStream, offset: int) -> WorkflowStreamState:
    """Truncate `stream` to its last events (by count and bytes) and return its state."""
    stream.truncate(offset - EVENTS_CARRIED)
    state = stream.get_state()
    kept = 0
    size = 0
    for item in reversed(state.log):
        size += len(item.data) + len(item.topic)
        if size > EVENT_BYTES_CARRIED:
            break
        kept += 1
    if kept < len(state.log):
        stream.truncate(state.base_offset + len(state.log) - kept)
        state = stream.get_state()
    return state


def recent_turns(turns: Iterable[TurnResult]) -> list[TurnResult]:
    """The newest of `turns` (oldest first) within `TURNS_CARRIED` and `TURN_BYTES_CARRIED`."""
    kept: list[TurnResult] = []
    size = 0
    for turn in reversed(list(turns)):
        size += len(turn.model_dump_json())
        if len(kept) == TURNS_CARRIED or size > TURN_BYTES_CARRIED:
            break
        kept.append(turn)
    return kept[::-1]
