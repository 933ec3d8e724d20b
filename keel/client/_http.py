"""What the sync and async clients share: options, retries, requests and how answers decode."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from keel import __version__
from keel.client._errors import KeelConnectionError, error_from, retry_after, short, unexpected
from keel.triggers import sign

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where `keel dev` serves; `KEEL_URL` overrides it."""
DEFAULT_TIMEOUT_S = 30.0
STREAM_IDLE_TIMEOUT_S = 60.0
"""A stream that brings nothing, not even the API's heartbeat (every 15 s), for this long
is taken as broken and opened again."""
HEALTHY_STREAM_S = 10.0
"""A stream that stayed open this long before it broke was a good one: retries count anew."""
CHAT_WAIT_MARGIN_S = 30.0
"""A sync chat's read timeout is the time the API waits for the answer plus this."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_MAX_S = 60.0
"""The longest `Retry-After` a retry waits for; past it the error goes to the caller."""


def retryable_error(err: Exception) -> bool:
    """Whether a failed attempt may be retried: timeouts, broken or refused connections."""
    return isinstance(err, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def with_read(timeout: httpx.Timeout, read: float | None) -> httpx.Timeout:
    """`timeout` with another read timeout (None: wait forever)."""
    return httpx.Timeout(**{**timeout.as_dict(), "read": read})


@dataclass(frozen=True)
class Retries:
    """How often and how patiently a request is tried again.

    Every POST carries an `Idempotency-Key`, the same on each attempt, so a retry
    after a lost answer gets the first attempt's outcome instead of a second run.
    """

    max_retries: int = 3
    """Attempts after the first; 0 turns retries off."""
    base_delay_s: float = 0.5
    """The wait before the first retry; it doubles with each one."""
    max_delay_s: float = 8.0

    def delay(self, retry: int, headers: httpx.Headers | None = None) -> float:
        """The wait before retry number `retry` (from 1): backoff with jitter, or `Retry-After`."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        backoff *= random.uniform(0.5, 1.0)  # spread clients that failed together
        asked = retry_after(headers) if headers is not None else None
        return max(backoff, min(asked, RETRY_AFTER_MAX_S)) if asked is not None else backoff

    def again(self, retry: int, response: httpx.Response) -> bool:
        """Whether an answer with this status is tried again (as retry number `retry`)."""
        if retry > self.max_retries or response.status_code not in RETRY_STATUSES:
            return False
        asked = retry_after(response.headers)
        return asked is None or asked <= RETRY_AFTER_MAX_S


@dataclass
class Options:
    """A client's connection options, resolved from its arguments and the environment."""

    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    retries: Retries
    stream_idle_timeout: float | None

    @classmethod
    def of(
        cls,
        base_url: str | None,
        *,
        api_key: str | None,
        user_id: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        stream_idle_timeout: float | None,
        headers: Mapping[str, str] | None,
        http_base_url: str | None = None,
    ) -> Options:
        """The options, from the arguments of a client's constructor."""
        url = base_url or http_base_url or os.environ.get("KEEL_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("KEEL_API_KEY")
        sent = {"User-Agent": f"keel-python/{__version__}", **(headers or {})}
        if key:
            sent["Authorization"] = f"Bearer {key}"
        if user_id:
            sent["X-User-Id"] = user_id
        return cls(
            base_url=url.rstrip("/"),
            headers=sent,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retries=Retries(max_retries=max_retries),
            stream_idle_timeout=stream_idle_timeout,
        )

    def stream_timeout(self) -> httpx.Timeout:
        """The timeout of an event stream: the idle limit between two reads."""
        return with_read(self.timeout, self.stream_idle_timeout)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: what to send, and how to read a successful answer."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    body: Mapping[str, Any] | None = None
    """Sent as JSON; entries that are None are left out, so the API's defaults apply."""
    params: Mapping[str, Any] | None = None
    timeout: httpx.Timeout | None = None
    waits: float | None = None
    """The API may hold this request this many seconds (a sync chat): the read timeout
    allows for it."""
    idempotency_key: str | None = None
    """For a POST: the key every attempt sends (one is made when None)."""
    secret: bytes | None = None
    """Sign the body with it (`X-Keel-Signature`), as signed triggers need."""

    def request(self, http: httpx.Client | httpx.AsyncClient, options: Options) -> httpx.Request:
        """The request; build it once, so every attempt sends the same bytes and key."""
        headers = dict(options.headers)
        content = None
        if self.body is not None:
            body = {k: v for k, v in self.body.items() if v is not None}
            content = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            if self.secret is not None:
                headers["X-Keel-Signature"] = sign(self.secret, content)
        if self.method == "POST":
            headers["Idempotency-Key"] = self.idempotency_key or uuid.uuid4().hex
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        timeout = self.timeout or options.timeout
        if self.waits is not None:
            timeout = with_read(timeout, self.waits + CHAT_WAIT_MARGIN_S)
        return http.build_request(
            self.method,
            options.base_url + self.path,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
        )


def model(kind: type[M]) -> Callable[[httpx.Response], M]:
    """A decoder of a JSON body into `kind`."""

    def decode(response: httpx.Response) -> M:
        try:
            return kind.model_validate_json(response.content)
        except ValidationError as err:
            raise unexpected(response, short(err)) from err

    return decode


def field_of(kind: type[M], name: str) -> Callable[[httpx.Response], Any]:
    """A decoder of a JSON body into `kind`, answering its field `name` (a list, say)."""
    whole = model(kind)
    return lambda response: getattr(whole(response), name)


def by_status(kinds: Mapping[int, type[BaseModel]]) -> Callable[[httpx.Response], Any]:
    """A decoder that picks the model by the answer's status (200: the answer, 202: accepted)."""

    def decode(response: httpx.Response) -> Any:
        kind = kinds.get(response.status_code)
        if kind is None:
            raise unexpected(response, f"status {response.status_code}")
        return model(kind)(response)

    return decode


def decoded(call: Call[T], response: httpx.Response) -> T:
    """A read answer's value, or its error."""
    if response.status_code >= 400:
        raise error_from(response)
    return call.decode(response)


class Attempts:
    """Counts one request's attempts and says how long to wait before the next, if any."""

    def __init__(self, retries: Retries, url: str) -> None:
        self._retries = retries
        self._url = url
        self.retry = 0
        """The number of the next retry, less one."""

    def after_error(self, err: httpx.TransportError) -> float:
        """The wait after a failed attempt.

        Raises:
            KeelConnectionError: If no retry is left, or the error is not worth one.
        """
        self.retry += 1
        if not retryable_error(err) or self.retry > self._retries.max_retries:
            attempts = "1 attempt" if self.retry == 1 else f"{self.retry} attempts"
            raise KeelConnectionError(
                f"no answer from {self._url} ({attempts}): {type(err).__name__}: {err}"
            ) from err
        return self._retries.delay(self.retry)

    def after_answer(self, response: httpx.Response) -> float | None:
        """The wait after an answer worth another attempt (503, 429, …); None to keep it."""
        if not self._retries.again(self.retry + 1, response):
            return None
        self.retry += 1
        return self._retries.delay(self.retry, response.headers)

    def after_break(self, err: httpx.TransportError | None, *, healthy: bool) -> float | None:
        """The wait after a stream broke (`err`) or ended cleanly before its end; None to stop.

        Args:
            err: What broke it; None when the API ended it early.
            healthy: It brought events or stayed open a while: the count starts
                again, so a stream that lives for days survives many drops.

        Raises:
            KeelConnectionError: If it broke and no retry is left.
        """
        if healthy:
            self.retry = 0
        if err is not None:
            return self.after_error(err)
        self.retry += 1
        return None if self.retry > self._retries.max_retries else self._retries.delay(self.retry)
