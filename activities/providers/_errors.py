"""Vendor errors mapped onto Temporal `ApplicationError`s, so retries follow HTTP semantics."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import httpx2
from temporalio.exceptions import ApplicationError

from keel.redaction import redact_text, scrub_exception

_RETRYABLE_4XX = frozenset({408, 409, 429})
_MAX_DETAIL_CHARS = 300

# Stable `type=` strings: workflows and dashboards match on these, so never rename them.
_TYPES_BY_STATUS = {
    400: "ProviderBadRequest",
    401: "ProviderAuthError",
    403: "ProviderPermissionDenied",
    404: "ProviderNotFound",
    408: "ProviderTimeout",
    409: "ProviderConflict",
    413: "ProviderRequestTooLarge",
    422: "ProviderBadRequest",
    429: "RateLimited",
}


def is_retryable_status(status: int) -> bool:
    """Whether a vendor's HTTP status is worth another attempt.

    Args:
        status: The HTTP status code of the failed response.

    Returns:
        True for 408, 409, 429 and 5xx; False for other 4xx.
    """
    return status in _RETRYABLE_4XX or status >= 500


def error_type_for_status(status: int) -> str:
    """The stable `ApplicationError.type` for an HTTP status.

    Args:
        status: The HTTP status code of the failed response.

    Returns:
        A name such as "RateLimited" or "ProviderServerError".
    """
    if status >= 500:
        return "ProviderServerError"
    return _TYPES_BY_STATUS.get(status, "ProviderClientError")


def parse_retry_after(headers: Mapping[str, str] | None) -> timedelta | None:
    """Read how long the vendor asked us to wait.

    Understands `retry-after-ms` (OpenAI), and `Retry-After` as seconds or as an
    HTTP date.

    Args:
        headers: The response headers (case-insensitive mappings work as well).

    Returns:
        The delay, or None when the headers do not give a usable one.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            if name != "retry-after":
                continue
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        # A date in the past means "now"; a negative delay would be rejected by Temporal.
        return timedelta(seconds=max(0.0, seconds))
    return None


def short_vendor_message(body: object, fallback: str = "") -> str:
    """The vendor's own one-line explanation, taken from an error body.

    Handles OpenAI (`{"message": ...}` once the SDK unwrapped `error`) and
    Anthropic (`{"type": "error", "error": {"message": ...}}`) shapes.

    Args:
        body: The decoded error body the SDK kept on the exception.
        fallback: Used when the body holds no message.

    Returns:
        The message, truncated to a few hundred characters.
    """
    message: Any = None
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            message = inner.get("message")
        elif isinstance(inner, str):
            message = inner
        if message is None:
            message = body.get("message")
    elif isinstance(body, str):
        message = body
    text = str(message).strip() if message else fallback
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[:_MAX_DETAIL_CHARS] + "…"
    return text


def status_error(
    vendor: str, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> ApplicationError:
    """Build the error for a failed HTTP response.

    Args:
        vendor: Shown in the message, e.g. "OpenAI".
        status: The HTTP status code.
        detail: The vendor's short message (never headers, never a key).
        headers: Response headers, read only for Retry-After.

    Returns:
        An `ApplicationError` to raise `from` the vendor exception.
    """
    retryable = is_retryable_status(status)
    return ApplicationError(
        f"{vendor} returned HTTP {status}: {detail or 'no message'}",
        type=error_type_for_status(status),
        non_retryable=not retryable,
        next_retry_delay=parse_retry_after(headers) if retryable else None,
    )


def stream_error(vendor: str, detail: str) -> ApplicationError:
    """Build the error for a failure the vendor reported inside a 200 stream.

    Args:
        vendor: Shown in the message.
        detail: The vendor's short message.

    Returns:
        A retryable `ApplicationError`: mid-stream errors are overloads and the like.
    """
    return ApplicationError(
        f"{vendor} stream failed: {detail or 'no message'}", type="ProviderStreamError"
    )


def connection_error(vendor: str, *, timed_out: bool, cause: str = "") -> ApplicationError:
    """Build the error for a request that got no (complete) HTTP answer.

    Args:
        vendor: Shown in the message.
        timed_out: The request timed out rather than failing to connect.
        cause: The low-level exception's class name, to tell refusals from resets.

    Returns:
        A retryable `ApplicationError`.
    """
    suffix = f" ({cause})" if cause else ""
    if timed_out:
        return ApplicationError(f"{vendor} request timed out{suffix}", type="ProviderTimeout")
    return ApplicationError(f"could not reach {vendor}{suffix}", type="ProviderConnectionError")


def map_sdk_error(
    vendor: str, sdk: ModuleType, error: BaseException, *, secret: str = ""
) -> ApplicationError | None:
    """Map an exception from the `openai` or `anthropic` SDK (same class names in both).

    Args:
        vendor: Shown in the message, e.g. "Anthropic".
        sdk: The SDK module, whose `APIStatusError`, `APIConnectionError`,
            `APITimeoutError` and `APIError` are matched.
        error: What the SDK call raised.
        secret: The API key, blanked out should the vendor quote it back, here and
            in `error` and its chain (scrubbed in place: Temporal records them).

    Returns:
        The `ApplicationError` to raise `from error`, or None when `error` did not
        come from the vendor call (re-raise it unchanged).
    """
    scrub_exception(error, [secret])

    def redact(text: str) -> str:
        return redact_text(text, [secret])

    if isinstance(error, sdk.APIStatusError):
        detail = redact(short_vendor_message(error.body))
        if error.status_code < 400:
            # An `error` event inside a stream that had already answered 200.
            return stream_error(vendor, detail)
        return status_error(vendor, error.status_code, detail, error.response.headers)
    if isinstance(error, sdk.APIConnectionError):
        cause = type(error.__cause__).__name__ if error.__cause__ else ""
        return connection_error(
            vendor, timed_out=isinstance(error, sdk.APITimeoutError), cause=cause
        )
    if isinstance(error, sdk.APIError):
        return stream_error(vendor, redact(short_vendor_message(error.body, error.message)))
    # Reading a streamed body is not wrapped by the SDKs, so a dropped connection
    # surfaces as the raw transport error.
    if isinstance(error, httpx2.TransportError):
        return connection_error(
            vendor,
            timed_out=isinstance(error, httpx2.TimeoutException),
            cause=type(error).__name__,
        )
    return None
