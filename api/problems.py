"""RFC 9457 problem+json: every error the API returns has this shape."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Scope

from keel.logging import get_logger
from keel.wire import ProblemDetails

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem+json answers for `statuses`."""
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"description": HTTPStatus(status).phrase, "content": content}
        for status in statuses
    }


V1_PROBLEMS = problem_responses(400, 401, 403, 413, 422, 429, 503)
"""What any authenticated `/v1` route may answer, whatever it does."""


class Problem(Exception):
    """An error answered as problem+json.

    Args:
        status: the HTTP status.
        detail: what went wrong, for a human; never secrets or internals.
        type_: a short slug; the `type` member becomes `/problems/<slug>`.
        headers: extra response headers (e.g. Retry-After).
        extra: additional members (RFC 9457 extensions).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type_ = type_
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"/problems/{type_}" if type_ else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **({"instance": instance} if instance else {}),
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class ErrorShape(Protocol):
    """Renders an error in a protocol's own format, from what a problem would say."""

    def __call__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None,
        headers: dict[str, str] | None,
        extra: dict[str, Any],
    ) -> JSONResponse: ...


def add_error_shape(app: FastAPI, paths: Sequence[str], shape: ErrorShape) -> None:
    """Answer errors on `paths` (and the paths below them) in `shape`, not as problem+json.

    For protocols with an error format of their own (the OpenAI-compatible routes):
    their clients parse that format, whichever part of the API refused the request.
    """
    shapes: list[tuple[str, ErrorShape]] = getattr(app.state, "error_shapes", [])
    app.state.error_shapes = [*shapes, *((path, shape) for path in paths)]


def error_response(
    scope: Scope,
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The answer to an error of the request in `scope`: problem+json, or the error shape
    registered (`add_error_shape`) for its path."""
    path: str = scope.get("path", "")
    state = getattr(scope.get("app"), "state", None)
    for prefix, shape in getattr(state, "error_shapes", ()):
        if path == prefix or path.startswith(prefix + "/"):
            return shape(status, detail, type_=type_, headers=headers, extra=extra)
    return problem_response(status, detail, type_=type_, headers=headers, instance=path, **extra)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's own, answer as problem+json (or as the error
    shape of the path's protocol)."""
    _add_problem_schema(app)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return error_response(
            request.scope,
            exc.status,
            exc.detail,
            type_=exc.type_,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(
            request.scope, exc.status_code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the reason; echoing the input could echo a secret.
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return error_response(request.scope, 422, detail, type_="invalid-request", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return error_response(request.scope, 500, "internal error; see the server log")


def _add_problem_schema(app: FastAPI) -> None:
    """Put the `Problem` schema that `problem_responses` refers to into the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI caches this very dict, so the additions stay
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        return document

    app.openapi = openapi  # type: ignore[method-assign]
