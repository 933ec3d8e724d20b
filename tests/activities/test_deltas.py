"""The LLM activity's side of token streaming: what reaches the delta bus, and when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from temporalio.testing import ActivityEnvironment

from activities._deltas import streaming
from keel.deltas import Delta


class _SlowBus:
    """A bus whose publish takes a while, like a busy Redis."""

    kind = "test"

    def __init__(self, *, fail: bool = False) -> None:
        self.published: list[Delta] = []
        self._fail = fail

    async def publish(self, session_key: str, delta: Delta) -> None:
        await asyncio.sleep(0.05)
        if self._fail:
            raise ConnectionError("bus down")
        self.published.append(delta)

    def subscribe(self, session_key: str) -> AbstractAsyncContextManager[AsyncIterator[Delta]]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def _stream(bus: _SlowBus) -> None:
    async with streaming(
        bus, session_key="keel/t/s1", turn_id="t1", step=2, stream_offset=7
    ) as on_delta:
        assert on_delta is not None
        await on_delta("Hel")
        await asyncio.sleep(0.01)  # the first piece is on its way
        for piece in ("lo", "", " wor", "ld"):
            await on_delta(piece)


async def test_pieces_go_out_at_once_and_merge_while_the_bus_is_busy() -> None:
    bus = _SlowBus()
    await ActivityEnvironment().run(_stream, bus)
    assert [d.event.data["text"] for d in bus.published] == ["Hel", "lo world"]
    assert [d.event.data["index"] for d in bus.published] == [0, 1]
    first = bus.published[0]
    assert (first.event.session_id, first.event.turn_id, first.stream_offset) == ("s1", "t1", 7)
    assert (first.event.data["step"], first.event.data["attempt"]) == (2, 1)


async def test_a_failing_bus_costs_the_deltas_not_the_call() -> None:
    bus = _SlowBus(fail=True)
    await ActivityEnvironment().run(_stream, bus)
    assert bus.published == []


async def test_without_a_bus_there_is_no_streaming() -> None:
    async with streaming(None, session_key="k", turn_id="t", step=1, stream_offset=0) as on_delta:
        assert on_delta is None
