"""The messages of a session waiting for their turn, and their size."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from keel.session import QueuedTurn


class TurnQueue:
    """Queued turns, oldest first, with their size as JSON (which `send_message` bounds).

    Args:
        queued: what the previous run handed over.
    """

    def __init__(self, queued: list[QueuedTurn]) -> None:
        self._items: deque[QueuedTurn] = deque(queued)
        self.bytes = sum(_size(q) for q in queued)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[QueuedTurn]:
        return iter(self._items)

    def append(self, queued: QueuedTurn) -> None:
        """Queue a turn last."""
        self._items.append(queued)
        self.bytes += _size(queued)

    def popleft(self) -> QueuedTurn:
        """The oldest turn, taken off the queue."""
        queued = self._items.popleft()
        self.bytes -= _size(queued)
        return queued

    def remove(self, turn_id: str) -> None:
        """Take a turn off the queue, wherever it waits."""
        for queued in self._items:
            if queued.turn_id == turn_id:
                self._items.remove(queued)
                self.bytes -= _size(queued)
                return

    def clear(self) -> list[QueuedTurn]:
        """Empty the queue; what it held."""
        items = list(self._items)
        self._items.clear()
        self.bytes = 0
        return items

    def ids(self) -> list[str]:
        """The queued turns' ids, oldest first."""
        return [q.turn_id for q in self._items]


def _size(queued: QueuedTurn) -> int:
    return len(queued.model_dump_json())
