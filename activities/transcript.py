"""The transcript activity: cut off what a cancelled turn left in the store."""

from __future__ import annotations

from temporalio import activity

from activities._logging import activity_log_context
from keel.contracts.transcript import TruncateTranscriptInput, TruncateTranscriptResult
from keel.logging import get_logger
from keel.names import Activities
from keel.store import TranscriptStore

log = get_logger(__name__)


class TranscriptActivities:
    """Transcript edits the workflow asks of the store, beyond the LLM activity's writes.

    Args:
        store: The transcript store.
    """

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    @activity.defn(name=Activities.TRUNCATE_TRANSCRIPT)
    async def truncate(self, input: TruncateTranscriptInput) -> TruncateTranscriptResult:
        """Delete the messages from `from_seq` on: a rolled-back turn's, or an answer its
        cancelled turn never took. The workflow reuses those seqs for the next turn."""
        with activity_log_context():
            deleted = await self._store.truncate(input.session, from_seq=input.from_seq)
            log.info("transcript truncated", from_seq=input.from_seq, deleted=deleted)
            return TruncateTranscriptResult(deleted=deleted)
