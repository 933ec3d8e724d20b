"""One SSE connection: step events and token deltas merged, in the order the contract promises."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Hashable,
    Mapping,
    Sequence,
)
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass

from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import Client

from api._streams import Listener, StreamError, StreamItem
from api.deps import AppState
from api.problems import Problem
from keel.deltas import Delta
from keel.events import TURN_END_TYPES, SessionEvent
from keel.logging import get_logger

MAX_HELD_DELTAS = 10_000
ENDED_TURNS_KEPT = 64
MUX_BACKLOG = 1_000
"""Items waiting for a slow client; past it the sources wait (and the delta bus drops)."""
SEND_TIMEOUT_S = 30.0
"""A client that takes no data for this long is disconnected (it can resume)."""
ENDED = object()
"""What a `Mux` yields for a source that has ended."""
log = get_logger(__name__)


@dataclass(frozen=True)
class Out:
    """An event to send; `offset` is None for deltas, which cannot be resumed."""

    event: SessionEvent
    offset: int | None


class SessionView:
    """What one connection has sent of one session; decides what goes out next.

    Step events go out in offset order. A delta goes out only once every event
    published before its model call has (the delta channel outruns the event
    stream), and never after its turn has ended.

    Args:
        start: The first offset this connection sends.
        turn_id: Send only this turn's events (and `session.closed`), and stop
            after the turn ends.
    """

    def __init__(self, start: int, turn_id: str | None = None) -> None:
        self.passed = start - 1
        """The highest offset handled (sent or filtered out)."""
        self.done = False
        self._turn_id = turn_id
        self._held: list[Delta] = []
        self._ended: deque[str | None] = deque(maxlen=ENDED_TURNS_KEPT)

    def take(self, item: object) -> list[Out]:
        """The frames that a step event (`StreamItem`) or a `Delta` lets out."""
        if isinstance(item, StreamItem):
            return self.on_event(item)
        if isinstance(item, Delta):
            return self.on_delta(item)
        return []

    def on_event(self, item: StreamItem) -> list[Out]:
        """The frames that a step event lets out: itself (unless filtered) and held deltas."""
        if item.offset <= self.passed:
            return []  # sent already: it came first, apart from the listener
        event = item.event
        self.passed = item.offset
        out = []
        if self._wants(event.turn_id) or event.type == "session.closed":
            out.append(Out(event, item.offset))
        if event.type in TURN_END_TYPES:
            self._ended.append(event.turn_id)
            self._held = [d for d in self._held if d.event.turn_id != event.turn_id]
            self.done = self.done or (self._turn_id is not None and event.turn_id == self._turn_id)
        self.done = self.done or event.type == "session.closed"
        ready = [d for d in self._held if self._due(d)]
        self._held = [d for d in self._held if not self._due(d)]
        return out + [Out(d.event, None) for d in ready]

    def on_delta(self, delta: Delta) -> list[Out]:
        """The frames a delta lets out: itself now, or nothing (held, or dropped)."""
        turn_id = delta.event.turn_id
        if not self._wants(turn_id) or turn_id in self._ended:
            return []
        if self._due(delta):
            return [Out(delta.event, None)]
        if len(self._held) < MAX_HELD_DELTAS:
            self._held.append(delta)
        return []

    def _wants(self, turn_id: str | None) -> bool:
        return self._turn_id is None or turn_id == self._turn_id

    def _due(self, delta: Delta) -> bool:
        return delta.stream_offset is None or delta.stream_offset <= self.passed + 1


class Mux:
    """Items of several async sources as they come, tagged with their source's key."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Hashable, object]] = asyncio.Queue(MUX_BACKLOG)
        self._pumps: dict[Hashable, asyncio.Task[None]] = {}

    def add(self, key: Hashable, source: AsyncIterable[object]) -> None:
        """Start reading `source`; its items come out as `(key, item)`, then `(key, ENDED)`."""
        self._pumps[key] = asyncio.create_task(self._pump(key, source))

    def remove(self, key: Hashable) -> None:
        """Stop reading a source."""
        if (pump := self._pumps.pop(key, None)) is not None:
            pump.cancel()

    async def next(self) -> tuple[Hashable, object]:
        """The next item of any source."""
        return await self._queue.get()

    def close(self) -> None:
        """Stop reading every source."""
        for key in list(self._pumps):
            self.remove(key)

    async def _pump(self, key: Hashable, source: AsyncIterable[object]) -> None:
        try:
            async for item in source:
                await self._queue.put((key, item))
        except StreamError as err:
            # The client reconnects with Last-Event-ID and loses nothing.
            log.warning("event stream ended early", error=str(err))
        await self._queue.put((key, ENDED))


def frame(out: Out, *, id_prefix: str = "") -> ServerSentEvent:
    """The SSE frame of an event: `id:` its offset (deltas have none), `event:` its type."""
    return ServerSentEvent(
        data=json.dumps(out.event.wire(), separators=(",", ":")),
        event=out.event.type,
        id=None if out.offset is None else f"{id_prefix}{out.offset}",
    )


Outs = AsyncGenerator[Out, None]
Render = Callable[[Outs], AsyncIterator[ServerSentEvent]]
"""Turns what a connection sends into its SSE frames: Keel's own (`frames`), or a protocol's.
It closes `outs` when it ends, so the sources stop with the response."""


async def frames(outs: Outs) -> AsyncIterator[ServerSentEvent]:
    """Keel's frames of the events: one each, as `frame` writes it."""
    async with aclosing(outs):
        async for out in outs:
            yield frame(out)


async def session_outs(
    listener: Listener,
    deltas: AsyncIterator[Delta] | None,
    view: SessionView,
    first: Sequence[StreamItem] = (),
) -> Outs:
    """What one connection sends of a session, until it closes, the view is done, or the
    listener ends.

    `first`: events known already (the listener may bring them again; the view
    sends each offset once).
    """
    for known in first:
        for out in view.on_event(known):
            yield out
    mux = Mux()
    mux.add("events", listener)
    if deltas is not None:
        mux.add("deltas", deltas)
    try:
        while not view.done:
            key, item = await mux.next()
            if item is ENDED and key == "events":
                return
            for out in view.take(item):
                yield out
    finally:
        mux.close()


def session_frames(
    listener: Listener,
    deltas: AsyncIterator[Delta] | None,
    view: SessionView,
    first: Sequence[StreamItem] = (),
) -> AsyncIterator[ServerSentEvent]:
    """The frames of `session_outs`, as Keel's event streams send them."""
    return frames(session_outs(listener, deltas, view, first))


async def open_deltas(
    state: AppState, stack: AsyncExitStack, workflow_id: str
) -> AsyncIterator[Delta] | None:
    """Subscribe to a session's deltas for as long as `stack` is open; None without a bus."""
    if state.deltas is None:
        return None
    return await stack.enter_async_context(state.deltas.subscribe(workflow_id))


async def open_listener(
    state: AppState, client: Client, stack: AsyncExitStack, workflow_id: str, start: int
) -> Listener:
    """Listen to a session's events for as long as `stack` is open.

    Raises:
        Problem: 503 when the events before `start` cannot be read.
    """
    try:
        return await stack.enter_async_context(state.streams.listen(client, workflow_id, start))
    except Exception as err:  # the catch-up read failed: Temporal or the worker is down
        log.warning("cannot read the event stream", workflow_id=workflow_id, error=str(err))
        raise Problem(
            503, "the session's events cannot be read now", type_="events-unavailable"
        ) from err


def sse_response(
    state: AppState,
    frames: AsyncIterator[ServerSentEvent],
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """The streaming response, with a heartbeat comment that keeps idle connections open."""
    return EventSourceResponse(
        frames,
        ping=state.settings.sse_heartbeat_s,
        headers=headers,
        send_timeout=SEND_TIMEOUT_S,
    )
