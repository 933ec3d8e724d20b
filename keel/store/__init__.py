"""Transcript stores: where conversations live, so workflow history stays small."""

from __future__ import annotations

from pathlib import Path

from keel.store._base import MAX_SEQ, CopiedPrefix, TranscriptStore
from keel.store._postgres import PostgresTranscriptStore
from keel.store._sqlite import SqliteTranscriptStore
from keel.store._usage import (
    CallUsage,
    UsageGroup,
    UsageQuery,
    counted_for,
)

__all__ = [
    "MAX_SEQ",
    "CallUsage",
    "CopiedPrefix",
    "PostgresTranscriptStore",
    "SqliteTranscriptStore",
    "TranscriptStore",
    "UsageGroup",
    "UsageQuery",
    "counted_for",
    "open_store",
]


def open_store(url: str, *, data_dir: Path) -> TranscriptStore:
    """Open the store a formation's `memory.store` names.

    Args:
        url: `sqlite:///PATH` (a relative PATH resolves inside `data_dir`) or
            `postgresql://…` / `postgres://…` (connected on first use).
        data_dir: the process's data directory.

    Raises:
        ValueError: the URL names a back end this version does not have.
    """
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        return SqliteTranscriptStore(path if path.is_absolute() else data_dir / path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTranscriptStore(url)
    raise ValueError(
        f"unsupported transcript store {url.split(':', 1)[0]!r}:"
        " use sqlite:///PATH or postgresql://…"
    )
