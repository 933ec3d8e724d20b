"""One Workflow Streams subscription per session per API process, fanned out to its listeners.

Every long-poll of a Workflow Streams subscriber is an Update, recorded in the
session's history. So however many SSE clients watch a session, this process
polls it once. A listener that starts behind the shared subscription first gets
the events it missed, from the subscription's recent events or else by Query
(free of history), then joins it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.workflow_streams import PollInput, PollResult, WorkflowStreamClient

from keel.events import EVENTS_TOPIC, SessionEvent
from keel.logging import get_logger

POLL_QUERY = "__temporal_workflow_stream_poll"
"""The Workflow Streams query that reads retained items without waiting (its README names it)."""
QUERY_TIMEOUT = timedelta(seconds=10)
RECENT_KEPT = 256
"""Events a subscription keeps, so a listener that joins a moment late needs no query."""
log = get_logger(__name__)


@dataclass(frozen=True)
class StreamItem:
    """A step event and its offset in the session's stream."""

    offset: int
    event: SessionEvent


class StreamError(Exception):
    """The subscription of a session failed; its listeners end with this."""


_END = object()


class Listener:
    """One consumer of a session's events, from `start` on, each offset once and in order."""

    def __init__(self, start: int) -> None:
        self.next = start
        self._queue: asyncio.Queue[StreamItem | object] = asyncio.Queue()
        self._backlog: deque[StreamItem] = deque()
        self._error: BaseException | None = None

    def put(self, item: StreamItem) -> None:
        """Queue an item of the shared subscription."""
        self._queue.put_nowait(item)

    def catch_up(self, items: list[StreamItem]) -> None:
        """Items read apart from the subscription; they go out before the queued ones."""
        self._backlog.extend(items)

    def end(self, error: BaseException | None = None) -> None:
        """No more items will come; `error` if the subscription failed."""
        self._error = error
        self._queue.put_nowait(_END)

    def __aiter__(self) -> AsyncIterator[StreamItem]:
        return self._items()

    async def _items(self) -> AsyncIterator[StreamItem]:
        while True:
            if self._backlog:
                item: StreamItem | object = self._backlog.popleft()
            else:
                item = await self._queue.get()
            if item is _END:
                if self._error is not None:
                    raise StreamError(str(self._error)) from self._error
                return
            assert isinstance(item, StreamItem)
            # Catch-up reads and the shared subscription overlap; offsets decide.
            if item.offset < self.next:
                continue
            self.next = item.offset + 1
            yield item


class _Feed:
    """The one subscription of a session, and the listeners it feeds."""

    def __init__(self, client: Client, workflow_id: str, start: int, cooldown: timedelta) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.next = start
        """Offset of the next item the subscription will deliver."""
        self.listeners: set[Listener] = set()
        self.recent: deque[StreamItem] = deque(maxlen=RECENT_KEPT)
        self.ended = False
        self.closer: asyncio.TimerHandle | None = None
        self._cooldown = cooldown
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        error: BaseException | None = None
        stream = WorkflowStreamClient.create(self.client, self.workflow_id)
        items = stream.subscribe(
            [EVENTS_TOPIC],
            from_offset=self.next,
            result_type=SessionEvent,
            poll_cooldown=self._cooldown,
        )
        try:
            async for item in items:
                if item.offset < self.next:
                    continue
                if item.offset > self.next:
                    # Only when the offset was truncated at continue-as-new.
                    log.warning("events lost to truncation", workflow_id=self.workflow_id)
                self.next = item.offset + 1
                passed = StreamItem(item.offset, item.data)
                self.recent.append(passed)
                for listener in self.listeners:
                    listener.put(passed)
                if item.data.type == "session.closed":
                    break
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any failure ends this feed's listeners, not the process
            log.warning("event subscription failed", workflow_id=self.workflow_id, error=str(err))
            error = err
        finally:
            self.ended = True
            for listener in self.listeners:
                listener.end(error)
            if isinstance(items, AsyncGenerator):  # typed as an iterator; it is a generator
                await items.aclose()


class SessionStreams:
    """The per-process hub of session event subscriptions.

    Args:
        poll_cooldown: Pause between two polls of a session while events
            flow; bounds the polls (and history events) per second.
        linger: How long a subscription outlives its last listener, so a
            client that reconnects at once finds it still running.
    """

    def __init__(
        self,
        *,
        poll_cooldown: timedelta = timedelta(milliseconds=25),
        linger: timedelta = timedelta(seconds=10),
    ) -> None:
        self._cooldown = poll_cooldown
        self._linger = linger
        self._feeds: dict[str, _Feed] = {}
        self._closed = False

    @property
    def subscriptions(self) -> int:
        """Workflow Streams subscriptions this process holds now."""
        return sum(1 for feed in self._feeds.values() if not feed.ended)

    @contextlib.asynccontextmanager
    async def listen(self, client: Client, workflow_id: str, start: int) -> AsyncIterator[Listener]:
        """Listen to a session's events from offset `start` on.

        The listener ends after `session.closed`, when the workflow is gone,
        or when the hub closes; it raises `StreamError` if the subscription failed.
        """
        listener = Listener(start)
        if self._closed:
            listener.end()
            yield listener
            return
        feed = self._feed(client, workflow_id, start)
        behind = feed.next
        feed.listeners.add(listener)
        try:
            if start < behind:
                listener.catch_up(await _passed(feed, start, behind))
            yield listener
        finally:
            feed.listeners.discard(listener)
            if not feed.listeners:
                self._retire(feed)

    async def current_offset(self, client: Client, workflow_id: str) -> int:
        """The offset the next event of a session will get (for "live" listeners)."""
        feed = self._feeds.get(workflow_id)
        if feed is not None and not feed.ended:
            return feed.next
        stream = WorkflowStreamClient.create(client, workflow_id)
        return await asyncio.wait_for(stream.get_offset(), QUERY_TIMEOUT.total_seconds())

    async def close(self) -> None:
        """End every listener and subscription (the server is stopping)."""
        self._closed = True
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            await _stop(feed)

    def _feed(self, client: Client, workflow_id: str, start: int) -> _Feed:
        feed = self._feeds.get(workflow_id)
        if feed is None or feed.ended:
            feed = _Feed(client, workflow_id, start, self._cooldown)
            self._feeds[workflow_id] = feed
        if feed.closer is not None:
            feed.closer.cancel()
            feed.closer = None
        return feed

    def _retire(self, feed: _Feed) -> None:
        """Stop a feed without listeners after the linger time, unless one joins meanwhile."""

        def stop() -> None:
            if not feed.listeners and self._feeds.get(feed.workflow_id) is feed:
                del self._feeds[feed.workflow_id]
                feed.task.cancel()

        if feed.ended:
            stop()
        else:
            feed.closer = asyncio.get_running_loop().call_later(self._linger.total_seconds(), stop)


async def _passed(feed: _Feed, start: int, upto: int) -> list[StreamItem]:
    """The events in [start, upto) that the feed has already passed on."""
    if feed.recent and feed.recent[0].offset <= start:
        return [item for item in feed.recent if start <= item.offset < upto]
    return await _read_retained(feed, start, upto)


async def _read_retained(feed: _Feed, start: int, upto: int) -> list[StreamItem]:
    """The retained events from `start` on, at least up to `upto`, by Query (no history cost)."""
    handle = feed.client.get_workflow_handle(feed.workflow_id)
    converter = feed.client.data_converter.payload_converter
    items: list[StreamItem] = []
    offset = start
    while offset < upto:
        result = await handle.query(
            POLL_QUERY,
            PollInput(topics=[EVENTS_TOPIC], from_offset=offset),
            result_type=PollResult,
            rpc_timeout=QUERY_TIMEOUT,
        )
        for wire in result.items:
            # Items travel as base64 of a serialized Payload (the package's wire format).
            payload = Payload.FromString(base64.b64decode(wire.data))
            items.append(StreamItem(wire.offset, converter.from_payload(payload, SessionEvent)))
        if not result.more_ready:
            break
        offset = result.next_offset
    return items


async def _stop(feed: _Feed) -> None:
    feed.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feed.task
