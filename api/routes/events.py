"""Event streams as SSE: a session's (resumable), a chat turn's, and all the caller's sessions'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import Client

from api import _sessions
from api._errors import temporal_errors
from api._event_stream import (
    ENDED,
    Mux,
    SessionView,
    frame,
    open_deltas,
    open_listener,
    session_frames,
    sse_response,
)
from api.deps import (
    AppState,
    Caller,
    CurrentCaller,
    RequestStack,
    State,
    StreamSlot,
    TemporalClient,
)
from api.problems import Problem, problem_responses
from api.schemas import MAX_OFFSET, SessionId, TurnIdQuery
from keel.logging import get_logger
from keel.session import session_id_of, session_workflow_id

router = APIRouter(prefix="/v1", tags=["events"])
log = get_logger(__name__)
MAX_FOLLOWED = 200
"""Sessions one `GET /v1/events` connection follows at most."""
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "a stream of events"}
}
_OFFSET = r"(?:-1|[0-9]{1,15})"
"""An event offset as a resume point names it: -1 (before the first) or up to 15 digits."""
_CURSOR_ITEM = rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,127}}:{_OFFSET}"
OFFSET_PATTERN = rf"^{_OFFSET}$"
CURSOR_PATTERN = rf"^(?:{_CURSOR_ITEM}(?:,{_CURSOR_ITEM}){{0,{MAX_FOLLOWED - 1}}})?$"
"""`<session_id>:<offset>`, comma-separated, for at most `MAX_FOLLOWED` sessions."""
# The patterns are checked by FastAPI (a 422 before the route runs) and stated in the
# OpenAPI document, so clients and fuzzers see what the route takes.
SessionResumeId = Annotated[
    str | None, Header(alias="Last-Event-ID", pattern=OFFSET_PATTERN, max_length=16)
]
MergedResumeId = Annotated[
    str | None, Header(alias="Last-Event-ID", pattern=CURSOR_PATTERN, max_length=8192)
]


@router.get(
    "/sessions/{session_id}/events",
    response_class=EventSourceResponse,
    responses={**_SSE, **problem_responses(404)},
    dependencies=[StreamSlot],
)
async def session_events(
    session_id: SessionId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    stack: RequestStack,
    last_event_id: SessionResumeId = None,
    after: Annotated[int | None, Query(ge=-1, le=MAX_OFFSET)] = None,
    turn_id: TurnIdQuery = None,
) -> EventSourceResponse:
    """The session's step events (`id:` = offset) and token deltas (no `id:`), as they happen.

    Without a resume point it starts at the first event the session retains.
    `Last-Event-ID` (sent by EventSource on reconnect; it wins over `after`)
    or `?after=N` resumes after offset N. `?turn_id=` keeps one turn's events
    and ends after that turn. The stream of a closed session ends after
    `session.closed`.
    """
    if last_event_id is not None:
        after = int(last_event_id)
    session = (await _sessions.describe_session(state, client, caller, session_id)).session
    start = 0 if after is None else after + 1
    deltas = None
    if session.status == "active":
        deltas = await open_deltas(state, stack, session.workflow_id)
    listener = await open_listener(state, client, stack, session.workflow_id, start)
    return sse_response(state, session_frames(listener, deltas, SessionView(start, turn_id)))


@router.get(
    "/events", response_class=EventSourceResponse, responses=_SSE, dependencies=[StreamSlot]
)
async def all_events(
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    stack: RequestStack,
    last_event_id: MergedResumeId = None,
    after: Annotated[str | None, Query(pattern=CURSOR_PATTERN, max_length=4096)] = None,
) -> EventSourceResponse:
    """Events of all the caller's running sessions, merged; sessions started later join.

    `id:` is `<session_id>:<offset>`. Resume with `Last-Event-ID` or
    `?after=<session_id>:<offset>,…`: the sessions named resume after their
    offset, the others start live.
    """
    cursor = _cursor(last_event_id if last_event_id is not None else after)
    running = await _running_sessions(state, client, caller)
    merged = _Merged(state, client, caller, stack, known=running)
    for session_id, offset in cursor.items():
        workflow_id = session_workflow_id(caller.tenant, session_id)
        if workflow_id not in running:
            try:  # closed since, perhaps: its remaining events still come
                await _sessions.describe_session(state, client, caller, session_id)
            except Problem:
                continue
        await merged.follow(workflow_id, offset + 1)
    live = [w for w in running if session_id_of(w) not in cursor]
    offsets = await asyncio.gather(
        *(state.streams.current_offset(client, w) for w in live), return_exceptions=True
    )
    for workflow_id, live_offset in zip(live, offsets, strict=True):
        if isinstance(live_offset, int):
            await merged.follow(workflow_id, live_offset)
        else:
            merged.forget(workflow_id)  # retried from its start at the next refresh
    return sse_response(state, merged.frames())


class _Merged:
    """`GET /v1/events`: follows each of the caller's sessions, finds new ones as they start."""

    def __init__(
        self,
        state: AppState,
        client: Client,
        caller: Caller,
        stack: AsyncExitStack,
        *,
        known: list[str],
    ) -> None:
        self._state = state
        self._client = client
        self._caller = caller
        self._stack = stack
        self._mux = Mux()
        stack.callback(self._mux.close)
        self._seen = set(known)
        """Sessions followed now or before, or running when the connection opened."""
        self._views: dict[str, SessionView] = {}
        self._session_stacks: dict[str, AsyncExitStack] = {}

    def forget(self, workflow_id: str) -> None:
        """Let the next refresh follow this session afresh."""
        self._seen.discard(workflow_id)

    async def follow(self, workflow_id: str, start: int) -> None:
        """Merge a session's events (from `start`) and deltas into the stream."""
        self._seen.add(workflow_id)
        session_stack = AsyncExitStack()
        self._stack.push_async_callback(session_stack.aclose)
        listener = await open_listener(self._state, self._client, session_stack, workflow_id, start)
        deltas = await open_deltas(self._state, session_stack, workflow_id)
        self._views[workflow_id] = SessionView(start)
        self._session_stacks[workflow_id] = session_stack
        self._mux.add((workflow_id, "events"), listener)
        if deltas is not None:
            self._mux.add((workflow_id, "deltas"), deltas)

    async def frames(self) -> AsyncIterator[ServerSentEvent]:
        """The merged frames, until the client leaves."""
        self._mux.add("refresh", _ticks(self._state.settings.events_refresh_s))
        while True:
            key, item = await self._mux.next()
            if not isinstance(key, tuple):  # the refresh ticker
                await self._refresh()
                continue
            workflow_id, _ = key
            view = self._views.get(workflow_id)
            if view is None:
                continue
            prefix = session_id_of(workflow_id) + ":"
            for out in view.take(item):
                yield frame(out, id_prefix=prefix)
            if view.done or (item is ENDED and key == (workflow_id, "events")):
                await self._unfollow(workflow_id)

    async def _unfollow(self, workflow_id: str) -> None:
        self._mux.remove((workflow_id, "events"))
        self._mux.remove((workflow_id, "deltas"))
        self._views.pop(workflow_id, None)
        if (session_stack := self._session_stacks.pop(workflow_id, None)) is not None:
            await session_stack.aclose()

    async def _refresh(self) -> None:
        try:
            running = await _running_sessions(self._state, self._client, self._caller)
        except Exception as err:  # Temporal unreachable for a moment: try at the next tick
            log.warning("cannot list sessions", error=str(err))
            return
        for workflow_id in running:
            if workflow_id not in self._seen and len(self._views) < MAX_FOLLOWED:
                try:
                    await self.follow(workflow_id, 0)
                except Problem:
                    self.forget(workflow_id)


async def _ticks(every_s: float) -> AsyncIterator[None]:
    while True:
        await asyncio.sleep(every_s)
        yield None


async def _running_sessions(state: AppState, client: Client, caller: Caller) -> list[str]:
    """Workflow ids of the caller's running sessions (all the tenant's for admins and dev)."""
    user = caller.user_id if caller.user_given else None
    query = _sessions.sessions_query(state, caller.tenant, user, "ExecutionStatus = 'Running'")
    with temporal_errors():
        return [
            execution.id async for execution in client.list_workflows(query, limit=MAX_FOLLOWED)
        ]


def _cursor(value: str | None) -> dict[str, int]:
    """A merged-stream resume point (matching `CURSOR_PATTERN`): session id -> offset."""
    cursor: dict[str, int] = {}
    for part in filter(None, (value or "").split(",")):
        session_id, offset = part.rsplit(":", 1)
        cursor[session_id] = int(offset)
    return cursor
