"""Stream a model call's text to the delta bus as it arrives (never into workflow history)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from keel.deltas import Delta, DeltaBus
from keel.events import MessageDelta, SessionEvent
from keel.logging import get_logger
from keel.session import session_id_of

log = get_logger(__name__)


class DeltaSender:
    """The `on_delta` callback of one model call: publishes each piece of text.

    Best effort: if the bus fails, the call goes on without streaming; the
    durable `message.completed` event still carries the whole answer.

    Args:
        bus: Where deltas go.
        session_key: The session's workflow id (the bus channel).
        turn_id: The turn.
        step: The model call within the turn.
        stream_offset: The session's stream offset when the call was scheduled.
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
        self._broken = False

    async def __call__(self, text: str) -> None:
        """Publish one piece of text."""
        if not text or self._broken:
            return
        payload = MessageDelta(text=text, step=self._step, attempt=self._attempt, index=self._index)
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
