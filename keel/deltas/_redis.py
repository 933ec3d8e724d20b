"""The Redis delta bus: pub/sub, one channel per session, so API and workers may run apart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from pydantic import ValidationError
from redis.asyncio.client import PubSub

from keel.deltas._base import Delta, Fanout, drain
from keel.logging import get_logger

CHANNEL_PREFIX = "keel:deltas:"
RETRY_AFTER_S = 1.0
log = get_logger(__name__)


def channel(session_key: str) -> str:
    """The Redis channel of a session's deltas."""
    return CHANNEL_PREFIX + session_key


class RedisDeltaBus:
    """Publishes with `PUBLISH`; subscribes over one shared pub/sub connection per process.

    One connection, not one per listener: an API serving many streams holds
    one subscription per session and fans each message out to local queues.

    Args:
        url: A `redis://` URL (`KEEL_REDIS_URL`).
    """

    kind = "redis"

    def __init__(self, url: str) -> None:
        # Short timeouts: a Redis outage must cost deltas, never stall a model call.
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._fanout = Fanout()
        # SUBSCRIBE/UNSUBSCRIBE of one channel must reach Redis in the order
        # the fan-out changed, or a new subscriber could end up unsubscribed.
        self._lock = asyncio.Lock()

    async def publish(self, session_key: str, delta: Delta) -> None:
        """Publish `delta` on the session's channel.

        Raises:
            redis.RedisError: When Redis cannot be reached.
        """
        await self._redis.publish(channel(session_key), delta.model_dump_json())

    @asynccontextmanager
    async def subscribe(self, session_key: str) -> AsyncIterator[AsyncIterator[Delta]]:
        """Deltas of the session published while the context is open.

        If Redis cannot be reached the iterator stays silent rather than
        failing: the durable step events do not depend on it.
        """
        queue, first = self._fanout.add(session_key)
        try:
            if first:
                await self._subscribe(session_key)
            yield drain(queue)
        finally:
            async with self._lock:
                if self._fanout.remove(session_key, queue) and self._pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        await self._pubsub.unsubscribe(channel(session_key))

    async def close(self) -> None:
        """Stop reading and close the connections."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()

    async def _subscribe(self, session_key: str) -> None:
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pubsub.subscribe(channel(session_key))
            except (redis.RedisError, OSError) as err:
                log.warning("cannot subscribe to deltas; streaming without them", error=str(err))
                return
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(self._pubsub))

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except (redis.RedisError, OSError) as err:
                # redis-py reconnects and re-subscribes on the next read.
                log.warning("delta subscription lost; retrying", error=str(err))
                await asyncio.sleep(RETRY_AFTER_S)
                continue
            if message is None or message.get("type") != "message":
                continue
            key = message["channel"].decode().removeprefix(CHANNEL_PREFIX)
            try:
                self._fanout.deliver(key, Delta.model_validate_json(message["data"]))
            except ValidationError:
                log.warning("ignoring a malformed delta", channel=key)
