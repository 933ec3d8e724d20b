"""Limits: body size, message length, sessions per user, waiting turns, streams, request rate."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from temporalio.client import Client

from api import create_app
from api._limits import RateLimiter
from api.deps import AUTHENTICATED, AppState, StreamClaim, StreamSlot
from api.problems import Problem
from api.schemas import LastEventId
from keel.formation import Formation
from keel.keys import digest
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers

KEY = "client-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"


@contextlib.asynccontextmanager
async def serving(
    app: FastAPI,
    *,
    workers: tuple[Client, Settings, Formation, TranscriptStore] | None = None,
    key: str | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` (sending `key`, if given), with workers if asked."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with contextlib.AsyncExitStack() as stack:
        if workers:
            await stack.enter_async_context(running_workers(*workers))
        yield await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://keel", headers=headers
            )
        )


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.keel
    return state


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def _problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{type_}"
    return body


async def test_bodies_over_the_limit_get_413_declared_or_streamed(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    app = create_app(
        settings.model_copy(update={"max_body_bytes": 1024}), formation, client=client, store=store
    )
    big = {"message": "x" * 2000}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):  # no Content-Length: the middleware must count
            yield b'{"message": "' + b"x" * 400
        yield b'"}'

    async with serving(app) as api:
        _problem(await api.post("/v1/chat", json=big), 413, "body-too-large")
        streamed = await api.post(
            "/v1/chat", content=chunks(), headers={"content-type": "application/json"}
        )
        _problem(streamed, 413, "body-too-large")
        # Under the limit the request goes on (to a 422 for this empty message).
        _problem(await api.post("/v1/chat", json={"message": ""}), 422, "invalid-request")


async def test_a_body_longer_than_its_content_length_is_still_counted(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    app = create_app(
        settings.model_copy(update={"max_body_bytes": 100}), formation, client=client, store=store
    )
    chunks = [b'{"message": "' + b"x" * 60, b"x" * 60 + b'"}']
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"10")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat",
        "raw_path": b"/v1/chat",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"keel"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("keel", 80),
    }
    await app(scope, receive, send)  # a raw ASGI call: httpx would not send a false length
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b"/problems/body-too-large" in sent[1]["body"]


async def test_a_message_over_the_api_limit_gets_422_before_any_session(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    app = create_app(
        settings.model_copy(update={"max_message_chars": 10}), formation, client=client, store=store
    )
    async with serving(app) as api:
        body = _problem(
            await api.post("/v1/chat", json={"message": "x" * 11}), 422, "message-too-long"
        )
        assert "the limit is 10" in body["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/sessions", {"metadata": {"a": "x" * 17_000}}, "body.metadata"),
        ("/v1/sessions", '{"metadata": {"a": "\\udbfb"}}', "body.metadata"),
        ("/v1/chat", {"message": "hi", "response_schema": {"a": "x" * 70_000}}, "response_schema"),
        ("/v1/sessions/-x/turns/a%20b", None, "session_id"),
    ],
)
async def test_oversized_or_malformed_input_gets_422(
    client: Client,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    path: str,
    body: object,
    field: str,
) -> None:
    app = create_app(settings, formation, client=client, store=store)
    async with serving(app) as api:
        if body is None:
            response = await api.get(path)
        elif isinstance(body, str):  # JSON text Python's encoder would not write
            response = await api.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await api.post(path, json=body)
    assert field in _problem(response, 422, "invalid-request")["detail"]


async def test_the_rate_limit_is_per_key_with_retry_after(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    limited = settings.model_copy(
        update={
            "client_keys": f"{KEY},{OTHER_KEY}",
            "rate_limit_per_minute": 60,
            "rate_limit_burst": 3,
        }
    )
    app = create_app(limited, formation, client=client, store=store)
    headers = {"Authorization": f"Bearer {KEY}", "X-User-Id": "ann"}
    async with serving(app) as api:
        for _ in range(3):
            assert (await api.get("/v1/agents", headers=headers)).status_code == 200
        refused = await api.get("/v1/agents", headers=headers)
        _problem(refused, 429, "rate-limited")
        assert refused.headers["retry-after"] == "1"
        # Another user of the same key shares its budget; another key has its own.
        other_user = {**headers, "X-User-Id": "bob"}
        assert (await api.get("/v1/agents", headers=other_user)).status_code == 429
        other_key = {**headers, "Authorization": f"Bearer {OTHER_KEY}"}
        assert (await api.get("/v1/agents", headers=other_key)).status_code == 200
        # Public routes are not counted.
        assert (await api.get("/health")).status_code == 200


async def test_dev_mode_has_no_per_key_or_per_user_limits(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    # Loopback only, one developer: no key to count against, and `keel dev`
    # sessions that pile up over days must not lock anyone out.
    strict = settings.model_copy(
        update={"rate_limit_per_minute": 1, "rate_limit_burst": 1, "max_sessions_per_user": 1}
    )
    app = create_app(strict, formation, client=client, store=store)
    async with serving(app, workers=(client, strict, formation, store)) as api:
        for _ in range(3):
            assert (await api.post("/v1/sessions", json={})).status_code == 201


async def test_the_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=120, burst=2, clock=lambda: now[0])
    await limiter.check("k")
    await limiter.check("k")
    with pytest.raises(Problem) as caught:
        await limiter.check("k")
    assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "1"}
    now[0] += 0.5  # two per second: one token back
    await limiter.check("k")
    with pytest.raises(Problem):
        await limiter.check("k")
    now[0] += 60  # never more than the burst
    await limiter.check("k")
    await limiter.check("k")
    with pytest.raises(Problem):
        await limiter.check("k")
    await RateLimiter(per_minute=0, burst=1).check("k")  # 0 disables it
    for _ in range(3):
        await limiter.check(None)  # dev mode: no key, no limit


async def _active_ids(api: httpx.AsyncClient, user: str, want: int) -> list[str]:
    """The user's active sessions, once visibility shows `want` of them."""
    ids: list[str] = []
    for _ in range(50):
        page = await api.get("/v1/sessions", params={"user_id": user, "status": "active"})
        ids = [s["id"] for s in page.json()["sessions"]]
        if len(ids) == want:
            break
        await asyncio.sleep(0.1)
    assert len(ids) == want, ids
    return ids


async def test_sessions_per_user_are_limited(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    limited = settings.model_copy(update={"admin_keys": KEY, "max_sessions_per_user": 2})
    # Users of their own: the dev server, and so the sessions counted, outlive each test.
    ann, bob = f"ann-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    app = create_app(limited, formation, client=client, store=store)
    async with serving(app, workers=(client, limited, formation, store), key=KEY) as api:
        for _ in range(2):
            assert (await api.post("/v1/sessions", json={"user_id": ann})).status_code == 201
        first, _ = await _active_ids(api, ann, 2)
        _problem(await api.post("/v1/sessions", json={"user_id": ann}), 409, "too-many-sessions")
        _problem(
            await api.post("/v1/chat", json={"message": "hi", "user_id": ann}),
            409,
            "too-many-sessions",
        )
        assert (await api.post("/v1/sessions", json={"user_id": bob})).status_code == 201
        # Closing one makes room again.
        assert (await api.delete(f"/v1/sessions/{first}")).status_code == 200
        await _active_ids(api, ann, 1)
        assert (await api.post("/v1/sessions", json={"user_id": ann})).status_code == 201


async def test_waiting_turns_per_user_are_limited(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    scripted = formation.model_copy(
        update={
            "models": {
                "default": formation.models["default"].model_copy(update={"provider": "scripted"})
            }
        }
    )
    limited = settings.model_copy(update={"client_keys": KEY, "max_concurrent_turns_per_user": 1})
    app = create_app(limited, scripted, client=client, store=store)
    turns = _state(app).limits.turns
    async with serving(app, workers=(client, limited, scripted, store), key=KEY) as api:
        ann = {"X-User-Id": "ann"}
        slow = asyncio.create_task(
            api.post("/v1/chat", json={"message": "slow [[sleep 1]]"}, headers=ann)
        )
        await _until(lambda: _is(turns.active("default/ann"), 1))
        refused = await api.post("/v1/chat", json={"message": "me too"}, headers=ann)
        _problem(refused, 429, "too-many-turns")
        assert refused.headers["retry-after"] == "1"
        # Async turns wait in their session, not in the API: they are not counted.
        later = await api.post("/v1/chat", json={"message": "later", "mode": "async"}, headers=ann)
        assert later.status_code == 202
        assert (
            await api.post("/v1/chat", json={"message": "bob"}, headers={"X-User-Id": "bob"})
        ).status_code == 200
        assert (await slow).status_code == 200
        assert await turns.active("default/ann") == 0
        assert (await api.post("/v1/chat", json={"message": "now"}, headers=ann)).status_code == 200


async def test_open_streams_per_key_are_limited_until_they_end(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    limited = settings.model_copy(
        update={"client_keys": f"{KEY},{OTHER_KEY}", "max_sse_per_key": 1}
    )
    app = create_app(limited, formation, client=client, store=store)
    streams = _state(app).limits.streams
    release = asyncio.Event()
    # SSE routes wired the way the events routes will be: a slot, a resume id.
    router = APIRouter()

    async def frames(last_event_id: int | None) -> AsyncIterator[bytes]:
        await release.wait()
        yield f"id: {last_event_id or 0}\ndata: done\n\n".encode()

    @router.get("/v1/test-events", dependencies=[StreamSlot])
    async def events(last_event_id: LastEventId = None) -> StreamingResponse:
        return StreamingResponse(frames(last_event_id), media_type="text/event-stream")

    # A route that streams only when asked, as /v1/chat does with `stream: true`.
    @router.get("/v1/test-maybe")
    async def maybe(claim: StreamClaim, stream: bool = False) -> StreamingResponse:
        if stream:
            await claim()
        return StreamingResponse(frames(None), media_type="text/event-stream")

    app.include_router(router, dependencies=AUTHENTICATED)
    headers = {"Authorization": f"Bearer {KEY}", "X-User-Id": "ann"}
    async with serving(app) as api:
        first = asyncio.create_task(api.get("/v1/test-events", headers=headers))
        key_name = f"client-{digest(KEY)[:8]}"
        await _until(lambda: _is(streams.active(key_name), 1))
        _problem(await api.get("/v1/test-events", headers=headers), 429, "too-many-streams")
        _problem(
            await api.get("/v1/test-maybe?stream=true", headers=headers), 429, "too-many-streams"
        )
        release.set()
        assert (await first).status_code == 200
        assert await streams.active(key_name) == 0  # released once the stream ended
        assert (await api.get("/v1/test-maybe?stream=true", headers=headers)).status_code == 200
        assert await streams.active(key_name) == 0
        resumed = await api.get("/v1/test-events", headers={**headers, "Last-Event-ID": "7"})
        assert resumed.text.startswith("id: 7")
        for bad in ("abc", "-1", "1.5", "9" * 30):
            bad_id = await api.get("/v1/test-events", headers={**headers, "Last-Event-ID": bad})
            _problem(bad_id, 422, "invalid-request")
