"""The order one SSE connection sends events and deltas in (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from api._event_stream import Out, SessionView
from api._streams import StreamItem
from keel.deltas import Delta
from keel.events import (
    EventPayload,
    MessageCompleted,
    MessageDelta,
    SessionClosed,
    SessionEvent,
    ToolResultEvent,
    TurnCompleted,
    TurnStarted,
)

NOW = datetime.now(UTC)


def _item(offset: int, payload: EventPayload, turn: str | None = "t1") -> StreamItem:
    return StreamItem(offset, SessionEvent.of(payload, session_id="s", turn_id=turn, ts=NOW))


def _delta(text: str, stream_offset: int | None, turn: str = "t1") -> Delta:
    payload = MessageDelta(text=text, step=1, attempt=1, index=0)
    event = SessionEvent.of(payload, session_id="s", turn_id=turn, ts=NOW)
    return Delta(event=event, stream_offset=stream_offset)


def _texts(outs: list[Out]) -> list[str]:
    return [o.event.data.get("text") or o.event.type for o in outs]


def test_a_delta_waits_for_the_events_published_before_its_model_call() -> None:
    view = SessionView(start=0)
    # The call began at offset 2: after turn.started (0) and a tool.result (1).
    assert view.on_delta(_delta("early", 2)) == []
    assert _texts(view.on_event(_item(0, TurnStarted(agent="a")))) == ["turn.started"]
    released = view.on_event(_item(1, ToolResultEvent(call_id="c", tool="x")))
    assert _texts(released) == ["tool.result", "early"]
    assert [o.offset for o in released] == [1, None]
    assert _texts(view.on_delta(_delta("next", 2))) == ["next"]


def test_nothing_of_a_turn_follows_its_end() -> None:
    view = SessionView(start=0)
    view.on_event(_item(0, TurnStarted(agent="a")))
    assert view.on_delta(_delta("held", 5)) == []
    view.on_event(_item(1, MessageCompleted(seq=1, content="x")))
    assert _texts(view.on_event(_item(2, TurnCompleted()))) == ["turn.completed"]
    assert view.on_delta(_delta("late", 1)) == []
    assert not view.done
    view.on_event(_item(3, SessionClosed(), turn=None))
    assert view.done


def test_a_resumed_view_sends_deltas_of_a_call_it_joined_midway() -> None:
    view = SessionView(start=7)
    assert _texts(view.on_delta(_delta("now", 5))) == ["now"]
    assert _texts(view.on_delta(_delta("unknown origin", None))) == ["unknown origin"]


def test_a_turn_filter_keeps_that_turn_and_ends_with_it() -> None:
    view = SessionView(start=0, turn_id="t2")
    assert view.on_event(_item(0, TurnStarted(agent="a"), turn="t1")) == []
    assert view.on_delta(_delta("other", 1, turn="t1")) == []
    assert _texts(view.on_event(_item(1, TurnStarted(agent="a"), turn="t2"))) == ["turn.started"]
    assert _texts(view.on_delta(_delta("mine", 2, turn="t2"))) == ["mine"]
    view.on_event(_item(2, TurnCompleted(), turn="t2"))
    assert view.done
