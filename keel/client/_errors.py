"""The errors the client raises: one class per kind of refusal, each with the problem+json."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import httpx
from pydantic import ValidationError

from keel.wire import FieldProblem, ProblemDetails

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "KeelConnectionError",
    "KeelError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "UnexpectedResponse",
    "error_from",
]

_DETAIL_CHARS = 500
"""How much of an answer that is not problem+json an error keeps as its detail."""


class KeelError(Exception):
    """Base of every error the client raises.

    Args:
        message: What went wrong, for a human.
        problem: The API's problem+json (RFC 9457); None when no answer came.
        status: The answer's HTTP status; None when no answer came.
        headers: The answer's headers (empty when none came).
    """

    def __init__(
        self,
        message: str,
        *,
        problem: ProblemDetails | None = None,
        status: int | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.status = status
        self.headers = headers if headers is not None else httpx.Headers()

    @property
    def type(self) -> str | None:
        """The problem's `type`, e.g. `/problems/session-not-found`."""
        return self.problem.type if self.problem else None

    @property
    def title(self) -> str | None:
        """The problem's `title`: the HTTP status phrase."""
        return self.problem.title if self.problem else None

    @property
    def detail(self) -> str | None:
        """The problem's `detail`: what was wrong, for a human."""
        return self.problem.detail if self.problem else None

    @property
    def errors(self) -> list[FieldProblem]:
        """The fields a 422 refused, each with the reason."""
        return (self.problem.errors or []) if self.problem else []

    @property
    def extra(self) -> dict[str, Any]:
        """The problem's extension members (e.g. a 409's `approval_status`)."""
        return dict(self.problem.model_extra or {}) if self.problem else {}


class KeelConnectionError(KeelError):
    """The API could not be reached, or the connection broke, on every attempt."""


class UnexpectedResponse(KeelError):
    """The API answered with a success this client cannot read (not Keel, or another version)."""


class BadRequest(KeelError):
    """400: the request could not be read (e.g. not JSON)."""


class Unauthorized(KeelError):
    """401: no API key, or one the API does not know."""


class Forbidden(KeelError):
    """403: the key may not do this."""


class NotFound(KeelError):
    """404: no such session, turn, approval, agent or trigger (for this caller)."""


class Conflict(KeelError):
    """409: the state forbids it now (a closed session, an approval already decided, …)."""


class PayloadTooLarge(KeelError):
    """413: the body is larger than the API accepts."""


class InvalidRequest(KeelError):
    """422: a field was refused; `errors` names each field and the reason."""


class RateLimited(KeelError):
    """429: too many requests, streams or waiting turns; `retry_after` says when to try again."""

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait, from the `Retry-After` header."""
        return retry_after(self.headers)


class ServerError(KeelError):
    """5xx: the API (or a proxy before it) failed, or Temporal is unreachable."""


_BY_STATUS: dict[int, type[KeelError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


def retry_after(headers: httpx.Headers) -> float | None:
    """The `Retry-After` header in seconds (the delta-seconds form Keel sends), if any."""
    try:
        return max(0.0, float(headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def error_from(response: httpx.Response) -> KeelError:
    """The error for an answer of status 400 or more; the body must have been read."""
    status = response.status_code
    problem = _problem(response)
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else KeelError)
    return kind(
        f"{status} {problem.title}: {problem.detail}",
        problem=problem,
        status=status,
        headers=response.headers,
    )


def _problem(response: httpx.Response) -> ProblemDetails:
    """The answer's problem+json; one made from the status for answers without it (a proxy's)."""
    try:
        return ProblemDetails.model_validate(response.json())
    except (ValueError, ValidationError):  # not JSON, or not a problem
        pass
    try:
        title = HTTPStatus(response.status_code).phrase
    except ValueError:
        title = "Error"
    return ProblemDetails(
        type="about:blank",
        title=title,
        status=response.status_code,
        detail=response.text[:_DETAIL_CHARS].strip() or title,
    )


def unexpected(response: httpx.Response, reason: str) -> UnexpectedResponse:
    """The error for a success whose body is not what the API sends."""
    return UnexpectedResponse(
        f"unexpected answer from {response.request.url.path} ({response.status_code}): {reason}",
        status=response.status_code,
        headers=response.headers,
    )


def short(err: ValidationError) -> str:
    """A one-line reason for a body that did not parse."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(body)"
    return f"{where}: {first['msg']}"
