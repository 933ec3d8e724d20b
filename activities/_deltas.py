"""Stream a model call's text to the delta bus as it arrives (never into workflow history)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from temporalio import activity

from activities.providers import OnDelta
from keel.deltas import Delta, DeltaBus
from keel.events import MessageDelta, SessionEvent
from keel.logging import get_logger
from keel.session import session_id_of

log = get_logger(__name__)


class _DeltaSender:
    """The `on_delta` callback of one model call.

    The model's loop never waits for the bus: text is handed to a sender task,
    which publishes at once when idle and, while a publish is under way, gathers
    what arrives into the next one. Idle, every piece goes out alone; under load,
    pieces merge, so fewer messages, not later ones.

    Best effort: if the bus fails, the call goes on without streaming; the
    durable `message.completed` event still carries the whole answer.
    """

    def __init__(
        self,
        bus: DeltaBus,
        *,
        session_key: str,
        turn_id: str,
        step: int,
        stream_offset: int | None,
    ) -> None:
        self._bus = bus
        self._key = session_key
        self._session_id = session_id_of(session_key)
        self._turn_id = turn_id
        self._step = step
        self._stream_offset = stream_offset
        self._attempt = activity.info().attempt
        self._index = 0
        self._pending: list[str] = []
        self._sender: asyncio.Task[None] | None = None
        self._broken = False

    async def __call__(self, text: str) -> None:
        """Queue one piece of text for publishing."""
        if not text or self._broken:
            return
        self._pending.append(text)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        # Let the sender start: a model that hands over all its text without
        # waiting (echo, scripted) still streams piece by piece when idle.
        await asyncio.sleep(0)

    async def drain(self) -> None:
        """Wait until every piece given so far is published."""
        if self._sender is not None:
            await self._sender

    def cancel(self) -> None:
        """Drop what is not published yet."""
        if self._sender is not None:
            self._sender.cancel()

    async def _send(self) -> None:
        while self._pending and not self._broken:
            text = "".join(self._pending)
            self._pending.clear()
            payload = MessageDelta(
                text=text, step=self._step, attempt=self._attempt, index=self._index
            )
            self._index += 1
            event = SessionEvent.of(
                payload, session_id=self._session_id, turn_id=self._turn_id, ts=datetime.now(UTC)
            )
            try:
                await self._bus.publish(
                    self._key, Delta(event=event, stream_offset=self._stream_offset)
                )
            except Exception as err:  # any bus failure: stop streaming, keep answering
                self._broken = True
                log.warning("delta bus failed; this call goes on without streaming", error=str(err))


@contextlib.asynccontextmanager
async def streaming(
    bus: DeltaBus | None,
    *,
    session_key: str,
    turn_id: str,
    step: int,
    stream_offset: int | None,
) -> AsyncIterator[OnDelta | None]:
    """The `on_delta` for one model call, or None without a bus (no streaming).

    On a normal exit every delta has been published, so they all reach the bus
    before the activity completes (and before the workflow's `message.completed`).

    Args:
        bus: Where deltas go.
        session_key: The session's workflow id (the bus channel).
        turn_id: The turn.
        step: The model call within the turn.
        stream_offset: The session's stream offset when the call was scheduled.
    """
    if bus is None:
        yield None
        return
    sender = _DeltaSender(
        bus, session_key=session_key, turn_id=turn_id, step=step, stream_offset=stream_offset
    )
    try:
        yield sender
    except BaseException:
        sender.cancel()
        raise
    await sender.drain()
