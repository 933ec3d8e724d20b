"""Long-term memories as the vector store, the activities and the API see them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from keel.contracts.memory import MemoryKind

_POINT_IDS = uuid.UUID("5b0c7e36-2a4e-4f0c-9a43-6b65656c6d65")


def memory_id(session: str, turn_id: str, index: int | str) -> str:
    """A point id derived from where the memory was written, so a retried write overwrites."""
    return str(uuid.uuid5(_POINT_IDS, f"{session}/{turn_id}/{index}"))


class NewMemory(BaseModel):
    """A memory to write; `id` comes from `memory_id`."""

    id: str
    kind: MemoryKind
    text: str
    session: str
    turn_id: str


class MemoryItem(BaseModel):
    """A stored memory."""

    id: str
    kind: MemoryKind
    text: str
    tenant: str
    user_id: str
    formation: str
    session: str
    turn_id: str
    created_at: datetime
    score: float | None = None
    """Similarity to the query, when recalled."""
