"""Read server-sent events: the client side of Keel's event streams (CLI, tests, benchmarks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SseEvent", "SseParser", "aiter_sse", "iter_sse"]


@dataclass
class SseEvent:
    """One event of a `text/event-stream`."""

    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> dict[str, Any]:
        """The data, parsed as the JSON object Keel sends."""
        value: dict[str, Any] = json.loads(self.data)
        return value


@dataclass
class SseParser:
    """Turns lines into events, per the WHATWG rules Keel's streams use.

    Comments (heartbeats) are skipped. `id` is the event's own `id:` line, not
    the last one seen: Keel's deltas have none, and that should show.
    """

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line break); returns an event when a blank line ends one."""
        if not line:
            if not self._data and not self._event:
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def iter_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events from lines, e.g. `httpx.Response.iter_lines()`."""
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Events from async lines, e.g. `httpx.Response.aiter_lines()`."""
    parser = SseParser()
    async for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
