"""The chaos harness's clients: keyed chat turns retried through kills, and timed reads.

A turn is one `POST /v1/chat` with an `Idempotency-Key` of its own, sent
again with the same key and body on a connection error, a timeout, a 5xx or a
202 (a sync chat still waiting after `wait_s`), until it answers or its
deadline passes. The key is what makes a retry safe across an API kill: the
retry runs with the first attempt's session, turn and update ids, so it can
only find or finish the same turn, never start another.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_PAUSE_S = 0.25
"""Between attempts of a POST: a dead API refuses at once, and must not be hammered."""
READ_PAUSE_S = 0.2
"""Between one session's rounds of reads."""
READ_TIMEOUT_S = 30.0
"""A read that has not answered by then hangs, as far as the harness is concerned."""
WAIT_S = 10.0
"""A sync chat's `wait_s`: answer 202 after it, so a turn that a kill delays is asked again."""


class Refused(Exception):
    """A POST answered with an error that a retry will not fix (a 4xx)."""


@dataclass
class Turn:
    """One chat turn as the client sent it, and what it heard back."""

    session_id: str
    text: str
    """Unique in the whole run, so the transcript shows each turn's messages apart."""
    key: str
    """The turn's `Idempotency-Key`, the same on every attempt."""
    turn_id: str | None = None
    status: str | None = None
    """The last turn status the API answered (`completed` once done)."""
    answer: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    """From the first attempt to the answer (or to giving up)."""
    error: str | None = None


@dataclass
class Reads:
    """What the readers saw: how long answered reads took, and how many did not answer."""

    answered: int = 0
    slowest_s: float = 0.0
    slowest: str = ""
    """Which read was the slowest: `GET <what> -> <status>`."""
    unanswered: int = 0
    """Refused or cut off (an API being killed or restarted): expected under chaos."""
    hung: int = 0
    """No answer within READ_TIMEOUT_S: a bug."""

    def add(self, what: str, status: int, seconds: float) -> None:
        self.answered += 1
        if seconds > self.slowest_s:
            self.slowest_s, self.slowest = seconds, f"GET {what} -> {status}"


@dataclass
class Progress:
    """How many turns have been sent and done, for the chaos loop to time its kills by."""

    sent: int = 0
    done: int = 0
    """Turns answered, or given up on."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def in_flight(self) -> int:
        """Turns sent and not done yet."""
        return self.sent - self.done

    def one_more(self) -> None:
        self.sent += 1
        self._changed.set()

    async def reach(self, sent: int) -> None:
        """Return once at least `sent` turns have been sent."""
        while self.sent < sent:
            self._changed.clear()
            await self._changed.wait()


class Client:
    """Chat and read through the API at `http`, retrying through kills.

    Args:
        http: a client with the API's base URL.
        deadline_s: how long one POST may keep retrying before it counts as lost.
    """

    def __init__(self, http: httpx.AsyncClient, *, deadline_s: float) -> None:
        self._http = http
        self._deadline_s = deadline_s
        self.reads = Reads()

    async def create_session(self, user: str, key: str) -> tuple[str, str]:
        """A new session of `user`: its id and its workflow's id."""
        answer = await self._post("/v1/sessions", {"user_id": user}, key=key)
        return str(answer["id"]), str(answer["workflow_id"])

    async def chat(self, turn: Turn, progress: Progress) -> None:
        """Send `turn` until the API answers with its outcome; fill in what it said."""
        body = {"message": turn.text, "session_id": turn.session_id, "wait_s": WAIT_S}
        started = time.monotonic()
        progress.one_more()
        try:
            answer = await self._post("/v1/chat", body, key=turn.key, turn=turn)
        except (Refused, TimeoutError) as err:
            turn.error = str(err)
        else:
            turn.turn_id, turn.status = answer["turn_id"], answer["status"]
            turn.answer = (answer.get("message") or {}).get("content")
        progress.done += 1
        turn.seconds = round(time.monotonic() - started, 3)

    async def _post(
        self, path: str, body: dict[str, Any], *, key: str, turn: Turn | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self._deadline_s
        headers = {"Idempotency-Key": key}
        while time.monotonic() < deadline:
            if turn is not None:
                turn.attempts += 1
            try:
                response = await self._http.post(
                    path, json=body, headers=headers, timeout=WAIT_S + 15
                )
            except httpx.TransportError:  # refused, cut off by a kill, or timed out
                pass
            else:
                code = response.status_code
                if code in (200, 201):
                    return dict(response.json())
                if code == 202 and turn is not None:
                    # Still running past wait_s: remember the turn, and ask again.
                    accepted = response.json()
                    turn.turn_id, turn.status = accepted["turn_id"], accepted["status"]
                    continue
                if code < 500:
                    raise Refused(f"{path} -> {code}: {response.text}")
            await asyncio.sleep(RETRY_PAUSE_S)
        raise TimeoutError(f"{path} did not answer within {self._deadline_s:g} s")

    async def read_until(self, turns: list[Turn], stop: asyncio.Event) -> None:
        """Read the session of `turns` and its latest turn, timing each read, until `stop`."""
        session_id = turns[0].session_id
        while not stop.is_set():
            await self._timed_get("session", f"/v1/sessions/{session_id}")
            known = [t.turn_id for t in turns if t.turn_id is not None]
            if known:
                await self._timed_get("turn", f"/v1/sessions/{session_id}/turns/{known[-1]}")
            await asyncio.sleep(READ_PAUSE_S)

    async def _timed_get(self, what: str, path: str) -> None:
        started = time.monotonic()
        try:
            response = await self._http.get(path, timeout=READ_TIMEOUT_S)
        except httpx.TimeoutException:
            self.reads.hung += 1
        except httpx.TransportError:
            self.reads.unanswered += 1
        else:
            self.reads.add(what, response.status_code, time.monotonic() - started)

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of the session, from the transcript store, through the API."""
        response = await self._http.get(f"/v1/sessions/{session_id}", params={"limit": 1000})
        response.raise_for_status()
        return list(response.json()["messages"])
