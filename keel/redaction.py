"""Redaction: secrets out of error chains, and tool payloads out of events when asked."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from keel.formation import PrivacyConfig

__all__ = ["REDACTED", "redact_event_data", "redact_text", "scrub_exception"]

REDACTED = "[redacted]"
_ARGUMENT_EVENTS = frozenset({"tool.call", "approval.requested", "approval.decided"})
_RESULT_EVENTS = frozenset({"tool.result"})
_RESULT_KEYS = ("content", "glimpse", "result")


def redact_event_data(type: str, data: dict[str, Any], privacy: PrivacyConfig) -> dict[str, Any]:
    """`data` of an event of `type`, with what `privacy` hides replaced by `REDACTED`.

    Keys are matched by name (`arguments`; `content`, `glimpse` or `result`), so
    payloads added to these events later are covered as long as they use those names.
    """
    hidden: tuple[str, ...] = ()
    if privacy.redact_tool_arguments and type in _ARGUMENT_EVENTS:
        hidden = ("arguments",)
    elif privacy.redact_tool_results and type in _RESULT_EVENTS:
        hidden = _RESULT_KEYS
    if not any(key in data for key in hidden):
        return data
    return {key: REDACTED if key in hidden else value for key, value in data.items()}


def redact_text(text: str, secrets: Collection[str]) -> str:
    """`text` with every non-empty secret in `secrets` replaced by `REDACTED`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def scrub_exception(error: BaseException, secrets: Collection[str]) -> None:
    """Blank `secrets` out of `error` and every exception chained to it, in place.

    Temporal records an error's whole `__cause__` chain in workflow history,
    and a logged traceback prints every chained message: an SDK exception that
    quotes a key back must be cleaned before anything raises it on.
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(
            redact_text(arg, secrets) if isinstance(arg, str) else arg for arg in current.args
        )
        message = getattr(current, "message", None)
        if isinstance(message, str):  # the SDKs keep a copy of the text here
            current.message = redact_text(message, secrets)  # type: ignore[attr-defined]
        pending += [current.__cause__, current.__context__]
