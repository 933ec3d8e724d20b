"""Events as the client yields them, and what a stream has seen so that it can resume."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from keel.client._http import Options
from keel.events import PAYLOADS, TURN_END_TYPES, EventPayload, SessionEvent
from keel.sse import SseEvent

TURN_ENDS: frozenset[str] = TURN_END_TYPES | {"turn.cancelled"}
"""Events after which nothing of their turn follows (`turn.cancelled`: DESIGN §10)."""
SESSION_CLOSED = "session.closed"


class Event(BaseModel):
    """One event of a stream: a step event, with its offset, or a token delta (offset None).

    `data` is the event object as the API sends it: `{type, session_id,
    turn_id, ts, …payload}`; `payload()` gives the typed view.
    """

    type: str
    """The event type (`turn.started`, `message.delta`, …); a string, so that types
    added by a newer API still arrive."""
    offset: int | None = None
    """The step event's position in the session's stream; None for token deltas."""
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def session_id(self) -> str | None:
        """The session the event belongs to."""
        value = self.data.get("session_id")
        return value if isinstance(value, str) else None

    @property
    def turn_id(self) -> str | None:
        """The turn the event belongs to; None for session-wide events."""
        value = self.data.get("turn_id")
        return value if isinstance(value, str) else None

    def payload(self) -> EventPayload:
        """The typed payload (`keel.events`), e.g. `MessageCompleted` with its `content`.

        Raises:
            KeyError: For an event type this version of Keel does not know.
            pydantic.ValidationError: If the data does not match the type's model.
        """
        return PAYLOADS[self.type].model_validate(self.data)

    def session_event(self) -> SessionEvent:
        """The event as the API's own model holds it (`data` without the envelope)."""
        envelope = ("type", "session_id", "turn_id", "ts")
        return SessionEvent.model_validate(
            {
                **{k: self.data.get(k) for k in envelope},
                "type": self.type,
                "data": {k: v for k, v in self.data.items() if k not in envelope},
            }
        )

    @classmethod
    def from_sse(cls, sse: SseEvent) -> Event:
        """The event of an SSE frame: `event:` its type, `id:` its offset, `data:` its JSON.

        Raises:
            ValueError: If the data is not a JSON object or the id not an offset.
        """
        data = json.loads(sse.data) if sse.data else {}
        if not isinstance(data, dict):
            raise ValueError("event data is not a JSON object")
        offset = int(sse.id) if sse.id else None
        return cls(type=sse.event, offset=offset, data=data)


@dataclass
class Resume:
    """What one stream has passed on of a session, so a new connection picks up after it.

    The API resumes after `Last-Event-ID`, so nothing comes twice; an offset at or
    before the last one seen is dropped here too, should a proxy replay a frame.

    Args:
        session_id: The session (None until a chat's stream answers with it).
        after: Resume after this offset; None starts at the first event the session keeps.
        turn_id: Only this turn's events; the stream ends after the turn ends.
    """

    session_id: str | None
    after: int | None = None
    turn_id: str | None = None
    done: bool = False
    """The stream has ended for good: the session closed, or the turn ended."""

    def take(self, sse: SseEvent) -> Event | None:
        """The event to pass on for a frame, or None for one seen already."""
        event = Event.from_sse(sse)
        if event.offset is not None:
            if self.after is not None and event.offset <= self.after:
                return None
            self.after = event.offset
        if event.type == SESSION_CLOSED or (
            self.turn_id is not None and event.type in TURN_ENDS and event.turn_id == self.turn_id
        ):
            self.done = True
        return event

    def request(self, http: httpx.Client | httpx.AsyncClient, options: Options) -> httpx.Request:
        """The request that (re)opens the session's events after what was seen."""
        assert self.session_id is not None, "a stream resumes once its session is known"
        headers = {**options.headers, "Accept": "text/event-stream"}
        if self.after is not None:
            headers["Last-Event-ID"] = str(self.after)
        return http.build_request(
            "GET",
            f"{options.base_url}/v1/sessions/{quote(self.session_id, safe='')}/events",
            params={"turn_id": self.turn_id} if self.turn_id else None,
            headers=headers,
            timeout=options.stream_timeout(),
        )

    def answered(self, headers: Mapping[str, str]) -> None:
        """Learn the session and turn from the answer to a streamed chat."""
        self.session_id = headers.get("x-session-id", self.session_id)
        self.turn_id = headers.get("x-turn-id", self.turn_id)
