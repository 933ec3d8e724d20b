"""Idempotency keys (DESIGN §10): a retried POST gets the first one's outcome; nothing runs twice.

A request with `Idempotency-Key` claims its key in the transcript store before
anything runs, with the ids it will use (session, turn, update). Whatever happens
after that, a retry with the same key and body finds those ids:

- the first request finished: the retry gets its answer, replayed from the store;
- it is still running, or its API process died: the retry does it again with the
  same ids. That is safe because every step is deduplicated by them: Temporal
  answers a repeated update id with the first call's outcome, the session
  workflow refuses a known turn id (`DuplicateTurn`, which makes `send_turn`
  wait for that turn), and a session starts once per workflow id.

Only final answers are stored: a sync chat still running after `wait_s` (202)
is not, so a later retry waits for the turn again; nor is a stream (a retry
streams the same turn), nor an error (a retry tries again, with the same ids).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import AppState, Caller, State
from api.problems import Problem
from api.schemas import ChatAccepted
from keel.idempotency import IdempotencyRecord, StoredResponse
from keel.logging import get_logger
from keel.store import TranscriptStore

T = TypeVar("T")
log = get_logger(__name__)

KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,255}$"
REPLAYED = "Idempotent-Replayed"
"""The response header that marks the outcome of an earlier request with the same key."""
_KEPT_HEADERS = ("location", "x-keel-session-id")
"""Headers of a final answer that are stored and replayed with it (the OpenAI-compatible
chat names its session in a header)."""

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        max_length=255,
        description="Send the same key again to get the first request's outcome"
        " (`Idempotent-Replayed: true`) instead of a second run; see docs/api.md.",
    ),
]


class StoredAnswer(Exception):
    """Raised by `Idempotency.claim` when the key's request has finished: its answer, again."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.response = response


@dataclass
class Claim:
    """A request's right to run under its key, and the ids it runs with."""

    ids: dict[str, str]
    """The ids to use: the first request's, on a retry."""
    replayed: bool = False
    """Whether an earlier request with this key exists (still running, or died)."""
    update_id: str | None = None
    """A Temporal update id of this key (and caller and route); None without a key."""
    _record: IdempotencyRecord | None = None
    """The key's record, to finish; None without a key."""
    _store: TranscriptStore | None = field(default=None, repr=False)
    _status_code: int = 200

    async def finish(self, answer: T, response: Response, *, final: bool = True) -> T:
        """Mark a retry's answer `Idempotent-Replayed`, and store a final answer for the next.

        Args:
            answer: what the route returns; a `Response` (a stream) is never stored.
            response: the route's response, with the status and headers it set.
            final: whether this answer is the request's outcome (not a 202 past `wait_s`).
        """
        if self.replayed:
            (answer if isinstance(answer, Response) else response).headers[REPLAYED] = "true"
        if self._record is None or self._store is None or not final:
            return answer
        if isinstance(answer, Response):  # a stream: a retry streams the turn again
            return answer
        stored = StoredResponse(
            status_code=response.status_code or self._status_code,
            body=jsonable_encoder(answer),
            headers={k: v for k in _KEPT_HEADERS if (v := response.headers.get(k)) is not None},
        )
        await self._store.finish_idempotency(self._record, stored)
        return answer


class Idempotency:
    """The `Idempotency-Key` of a request, if it sent one, and the route it went to."""

    def __init__(self, state: AppState, request: Request, key: str | None) -> None:
        route = request.scope["route"]
        self._state = state
        self.key = key
        self.route = f"{request.method} {route.path}"
        self._path_params = dict(request.path_params)
        self._status_code: int = route.status_code or 200

    async def claim(self, caller: Caller, body: BaseModel, *new_ids: str) -> Claim:
        """Claim the key for this request before anything runs.

        Args:
            caller: whose key it is (keys are scoped to tenant and user).
            body: the request's body; with the path parameters, what the key stands for.
            new_ids: names of the ids a first request chooses (`turn_id`, ...).

        Returns:
            Without a key, fresh ids; else the ids recorded for the key.

        Raises:
            StoredAnswer: the key's request has finished; replay its answer.
            Problem: 422 `idempotency-key-reused` when the key came with another request.
        """
        fresh = {name: uuid.uuid4().hex for name in new_ids}
        if self.key is None:
            return Claim(fresh)
        scope = (caller.tenant, caller.user_id, self.route, self.key)
        record = IdempotencyRecord(
            tenant=caller.tenant,
            user_id=caller.user_id,
            route=self.route,
            key=self.key,
            request_hash=self._request_hash(body),
            ids=fresh,
        )
        ttl = timedelta(seconds=self._state.settings.idempotency_ttl_s)
        existing = await self._state.store.claim_idempotency(
            record, live_after=datetime.now(UTC) - ttl
        )
        if existing is None:
            ids, replayed, kept = fresh, False, record
        elif existing.request_hash != record.request_hash:
            raise Problem(
                422,
                "Idempotency-Key: this key was sent before with another request;"
                " use a new key for a new request",
                type_="idempotency-key-reused",
            )
        elif existing.status == "done" and existing.response is not None:
            log.info("idempotent replay", route=self.route, status=existing.response.status_code)
            raise StoredAnswer(existing.response)
        else:
            # The first request still runs, or its process died: do it again, with its ids.
            log.info("idempotent retry of an unfinished request", route=self.route)
            ids, replayed, kept = existing.ids, True, existing
        return Claim(
            ids,
            replayed=replayed,
            update_id=_update_id(scope),
            _record=kept,
            _store=self._state.store,
            _status_code=self._status_code,
        )

    def _request_hash(self, body: BaseModel) -> str:
        # Defaults left out, so `{}` and `{"mode": "sync"}` are one request, and a
        # field added in a later release does not change the hash of a retry.
        canonical = json.dumps(
            {
                "path": self._path_params,
                "body": body.model_dump(mode="json", exclude_defaults=True),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


async def idempotency(
    state: State, request: Request, key: IdempotencyKeyHeader = None
) -> Idempotency:
    """The request's `Idempotency-Key` (a malformed one is a 422 naming the header)."""
    return Idempotency(state, request, key)


Idempotent = Annotated[Idempotency, Depends(idempotency)]


def final_answer(answer: object, *, mode: str) -> bool:
    """Whether a turn's answer is the request's outcome: not a sync chat's 202 past `wait_s`."""
    return mode == "async" or not isinstance(answer, ChatAccepted)


def install_idempotency(app: FastAPI) -> None:
    """Answer `StoredAnswer` with the stored response, marked `Idempotent-Replayed`."""

    @app.exception_handler(StoredAnswer)
    async def _replay(request: Request, exc: StoredAnswer) -> JSONResponse:
        stored = exc.response
        headers = {**stored.headers, REPLAYED: "true"}
        return JSONResponse(stored.body, status_code=stored.status_code, headers=headers)


def _update_id(scope: tuple[str, ...]) -> str:
    """An update id for this key: hashed with the scope, so two users' keys never meet."""
    return "idem-" + hashlib.sha256("\0".join(scope).encode()).hexdigest()[:40]
