"""The delta bus contract, the message it carries, and the local fan-out every bus shares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from pydantic import BaseModel

from keel.events import SessionEvent
from keel.logging import get_logger

MAX_BACKLOG = 10_000
"""Deltas a slow subscriber may fall behind by before the newest are dropped."""
log = get_logger(__name__)


class Delta(BaseModel):
    """A `message.delta` event on its way from an LLM activity to API processes."""

    event: SessionEvent
    stream_offset: int | None = None
    """The session's stream offset when the model call began. An API holds the
    delta until it has sent every event before that offset, so a delta never
    overtakes the `turn.started` or `tool.result` that came before its call."""


class DeltaBus(Protocol):
    """Moves deltas from the activity that produces them to every API listening.

    Best effort and never durable: a subscriber sees the deltas published while
    it is subscribed; the durable `message.completed` event carries the whole text.
    """

    kind: str
    """`in-process` or `redis`, for /health."""

    async def publish(self, session_key: str, delta: Delta) -> None:
        """Send a delta to the subscribers of a session (its workflow id)."""
        ...

    def subscribe(self, session_key: str) -> AbstractAsyncContextManager[AsyncIterator[Delta]]:
        """Deltas of a session from the moment the context is entered until it exits."""
        ...

    async def close(self) -> None:
        """Release connections; subscribers stop receiving."""
        ...


def delta_bus_for(redis_url: str | None, *, in_process: bool) -> DeltaBus | None:
    """The bus a process uses.

    Args:
        redis_url: `KEEL_REDIS_URL`; when set, Redis pub/sub, so API and
            worker processes may run apart.
        in_process: whether the API and the worker share this process
            (`keel dev`); without Redis they then share an in-process bus.

    Returns:
        The bus, or None: no Redis and the API runs apart from the worker,
        so no deltas (step events still stream).
    """
    # Imported here: both modules import this one.
    if redis_url:
        from keel.deltas._redis import RedisDeltaBus

        return RedisDeltaBus(redis_url)
    if in_process:
        from keel.deltas._memory import InProcessDeltaBus

        return InProcessDeltaBus()
    return None


class Fanout:
    """Per-session queues of this process's subscribers."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[Delta]]] = {}
        self._dropped = 0

    def add(self, key: str) -> tuple[asyncio.Queue[Delta], bool]:
        """A new subscriber's queue, and whether it is the session's first."""
        queue: asyncio.Queue[Delta] = asyncio.Queue(maxsize=MAX_BACKLOG)
        queues = self._queues.setdefault(key, set())
        queues.add(queue)
        return queue, len(queues) == 1

    def remove(self, key: str, queue: asyncio.Queue[Delta]) -> bool:
        """Forget a subscriber; True if it was the session's last."""
        queues = self._queues.get(key, set())
        queues.discard(queue)
        if queues:
            return False
        self._queues.pop(key, None)
        return True

    def deliver(self, key: str, delta: Delta) -> None:
        """Hand a delta to each subscriber of its session, never waiting on a slow one."""
        for queue in self._queues.get(key, ()):
            try:
                queue.put_nowait(delta)
            except asyncio.QueueFull:
                self._dropped += 1
                if self._dropped % 1000 == 1:
                    log.warning("a delta subscriber is too slow; dropping", dropped=self._dropped)


async def drain(queue: asyncio.Queue[Delta]) -> AsyncIterator[Delta]:
    """A subscriber's deltas, as they arrive, forever."""
    while True:
        yield await queue.get()
