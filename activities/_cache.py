"""The response cache: answers of identical temperature-0 requests, kept `cache_ttl_s`.

The key is a hash of everything the provider is sent (model, system prompt, messages,
tools, schema and sampling parameters) and of the tenant, so one tenant's repeats
never answer, or reveal by their speed, another tenant's. Where the answers live:
Redis when the worker has `KEEL_REDIS_URL`, else the transcript store. The cache is
best effort: when it fails, the call goes to the provider as if nothing was cached.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis.asyncio as redis

from activities.providers import ModelRequest, ModelResponse
from keel.logging import get_logger
from keel.messages import Usage
from keel.store import TranscriptStore

KEY_PREFIX = "keel:cache:"
"""Redis keys of cached answers: the prefix, then the request's hash."""
_REQUEST_FIELDS = ("provider", "model", "base_url", "temperature", "max_tokens")
"""What of a model's configuration changes its answer (not its retries, queue or key)."""
_MESSAGE_FIELDS = {"role", "content", "tool_calls", "tool_call_id", "name", "is_error"}
"""What of a message the provider is sent (not its seq, turn or time)."""
log = get_logger(__name__)


class AnswerStore(Protocol):
    """Where cached answers live, as JSON text under a key."""

    async def get(self, key: str) -> str | None:
        """The answer under `key`, unless there is none or it expired."""
        ...

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        """Keep `value` under `key` for `ttl_s` seconds."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RedisAnswers:
    """Cached answers in Redis: `SET … PX`, so Redis expires them itself.

    Args:
        url: A `redis://` URL (`KEEL_REDIS_URL`).
    """

    def __init__(self, url: str) -> None:
        # Short timeouts: a Redis outage must cost cache hits, never stall a model call.
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)

    async def get(self, key: str) -> str | None:
        """The answer under `key`."""
        value = await self._redis.get(KEY_PREFIX + key)
        return value.decode() if isinstance(value, bytes) else value

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        """Keep `value` for `ttl_s`."""
        await self._redis.set(KEY_PREFIX + key, value, px=max(1, round(ttl_s * 1000)))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class StoreAnswers:
    """Cached answers in the transcript store (SQLite or PostgreSQL), for set-ups without Redis.

    Args:
        store: The worker's transcript store.
    """

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    async def get(self, key: str) -> str | None:
        """The answer under `key`, unless it expired."""
        return await self._store.cached_answer(key, now=datetime.now(UTC))

    async def put(self, key: str, value: str, *, ttl_s: float) -> None:
        """Keep `value` for `ttl_s`."""
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
        await self._store.cache_answer(key, value, expires_at=expires_at)

    async def close(self) -> None:
        """Nothing to release: the store is the worker's own."""


class ResponseCache:
    """Looks answers up before a model call, and keeps them after it.

    Args:
        answers: Where the answers live.
    """

    def __init__(self, answers: AnswerStore) -> None:
        self.answers = answers

    async def get(self, request: ModelRequest, *, tenant: str) -> ModelResponse | None:
        """The cached answer to `request`, marked `cached`, or None (also when the cache fails)."""
        if not request.model.caches:
            return None
        try:
            value = await self.answers.get(request_key(request, tenant=tenant))
            if value is None:
                return None
            # No tokens were spent on it: a hit costs nothing, and its usage says so.
            answer = ModelResponse.model_validate_json(value)
            return answer.model_copy(update={"cached": True, "usage": Usage()})
        except Exception as err:  # best effort: a broken cache is no cache
            log.warning("response cache unavailable", error=type(err).__name__)
            return None

    async def put(self, request: ModelRequest, response: ModelResponse, *, tenant: str) -> None:
        """Keep `response` for the model's `cache_ttl_s`, if the model caches."""
        ttl_s = request.model.cache_ttl_s
        if not request.model.caches or ttl_s is None:
            return
        try:
            value = response.model_dump_json(exclude={"cached"})
            await self.answers.put(request_key(request, tenant=tenant), value, ttl_s=ttl_s)
        except Exception as err:  # best effort, as above
            log.warning("response cache unavailable", error=type(err).__name__)

    async def close(self) -> None:
        """Release the answers' connections."""
        await self.answers.close()


def request_key(request: ModelRequest, *, tenant: str) -> str:
    """The hash of what the provider is sent for `request`, scoped to `tenant`."""
    model = request.model.model_dump(include=set(_REQUEST_FIELDS))
    body: dict[str, Any] = {
        "tenant": tenant,
        "model": model,
        "system": request.system_prompt,
        "messages": [m.model_dump(mode="json", include=_MESSAGE_FIELDS) for m in request.messages],
        "tools": [t.model_dump(mode="json") for t in request.tools],
        "schema": request.response_schema,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def open_cache(redis_url: str | None, store: TranscriptStore) -> ResponseCache:
    """The worker's response cache: in Redis when configured, else in the store."""
    return ResponseCache(RedisAnswers(redis_url) if redis_url else StoreAnswers(store))
