"""The transcript activity's contract: cutting off the messages a cancelled turn leaves behind."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TruncateTranscriptInput(BaseModel):
    """Delete a session's messages from `from_seq` on, and the summaries reaching past it.

    Idempotent: a retried call deletes nothing more.
    """

    session: str
    """The session's workflow id: the transcript store's key."""
    from_seq: int = Field(ge=0)


class TruncateTranscriptResult(BaseModel):
    """How many rows went."""

    deleted: int
