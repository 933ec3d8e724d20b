"""SDK clients for the HTTP providers: keys from the environment, one client per endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

from keel.formation import ModelConfig

ClientT = TypeVar("ClientT")

# Keyed by event loop first: an SDK client's connection pool belongs to the loop
# that opened it, and reusing it from another loop (e.g. a second test session)
# fails with "Event loop is closed".
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)
# Building is synchronous, so within one loop a lookup-then-insert cannot interleave;
# the lock covers workers that call from more than one thread.
_lock = threading.Lock()


def read_api_key(env_name: str) -> str:
    """Read an API key from the environment.

    Args:
        env_name: The variable's name, from `ModelConfig.api_key_env` or the default.

    Returns:
        The key.

    Raises:
        ApplicationError: `MissingApiKey`, non-retryable, naming the variable (never
            a value) when it is unset or empty.
    """
    value = os.environ.get(env_name, "")
    if not value:
        raise ApplicationError(
            f"API key environment variable {env_name} is not set on this worker",
            type="MissingApiKey",
            non_retryable=True,
        )
    return value


def require_model(config: ModelConfig) -> str:
    """The vendor model id, which HTTP providers cannot do without.

    Args:
        config: The model's configuration.

    Returns:
        `config.model`.

    Raises:
        ApplicationError: `MissingModel`, non-retryable, when it is not set.
    """
    if not config.model:
        raise ApplicationError(
            f"provider {config.provider!r} needs `model` set in the formation",
            type="MissingModel",
            non_retryable=True,
        )
    return config.model


def client_key(config: ModelConfig, env_name: str, api_key: str) -> tuple[Hashable, ...]:
    """The cache key for a model's SDK client.

    Args:
        config: The model's configuration.
        env_name: Where the key came from.
        api_key: The key itself; only a digest enters the cache key, so a rotated
            key gets a fresh client.

    Returns:
        A hashable key.
    """
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return (config.provider, config.base_url, env_name, config.timeout_s, digest)


def cached_client(key: Hashable, build: Callable[[], ClientT]) -> ClientT:
    """The client for `key` on the running event loop, built on first use.

    Args:
        key: From `client_key`.
        build: Makes the client; called at most once per key and loop.

    Returns:
        The shared client.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _clients.setdefault(loop, {})
        if key not in per_loop:
            per_loop[key] = build()
        client: ClientT = per_loop[key]
        return client
