"""The in-process delta bus: for `keel dev`, where the API and the worker share one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from keel.deltas._base import Delta, Fanout, drain


class InProcessDeltaBus:
    """Deltas handed from activity to API on the same event loop; nothing leaves the process."""

    kind = "in-process"

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def publish(self, session_key: str, delta: Delta) -> None:
        """Hand `delta` to the current subscribers of the session."""
        self._fanout.deliver(session_key, delta)

    @asynccontextmanager
    async def subscribe(self, session_key: str) -> AsyncIterator[AsyncIterator[Delta]]:
        """Deltas of the session published while the context is open."""
        queue, _ = self._fanout.add(session_key)
        try:
            yield drain(queue)
        finally:
            self._fanout.remove(session_key, queue)

    async def close(self) -> None:
        """Nothing to release."""
