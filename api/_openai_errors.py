"""OpenAI's error shape on the OpenAI-compatible routes: `{"error": {message, type, param, code}}`.

Whatever refuses a request to these paths (a missing key, the body limit, a
session's refusal, validation), the answer is what OpenAI's clients parse, so
they raise their own exception classes with a `code` to match. The rest of the
API keeps problem+json. Keel's problem types become the codes, in OpenAI's
snake case (`session-busy` → `session_busy`), with OpenAI's own names where it
has one (`model_not_found`, `invalid_api_key`, `rate_limit_exceeded`).

OpenAI's clients retry 408, 409, 429 and 5xx answers unless told otherwise; a
retried chat would send its message again. So every error but a 429 and a 503
(nothing ran; a retry is safe) says `x-should-retry: false`.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api.openai_schemas import OpenAIError
from api.problems import add_error_shape

OPENAI_PATHS = ("/v1/models", "/v1/chat/completions")
CODES = {
    "agent-not-found": "model_not_found",
    "unauthorized": "invalid_api_key",
    "rate-limited": "rate_limit_exceeded",
    "body-too-large": "request_too_large",
    "invalid-request": "invalid_value",
}
"""Keel's problem types that OpenAI has a code of its own for."""
TYPES = {"turn-failed": "server_error"}
"""Keel's problem types whose OpenAI `type` is not the one of their status: the turn ran, but
its model (or a step) failed."""
RETRIED = frozenset({429, 503})
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
KEEL_MEMBERS = ("session_id", "turn_id", "approval_ids")
"""Members of a problem that the error carries too: where a pending answer can be followed."""


def error_type(status: int, type_: str | None = None) -> str:
    """OpenAI's error `type` for an HTTP status (and Keel's problem type)."""
    if type_ in TYPES:
        return TYPES[type_]
    if status >= 500:
        return "server_error"
    return {
        401: "authentication_error",
        403: "permission_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error")


def error_body(
    status: int, detail: str, *, type_: str | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """The `{"error": {...}}` of an error, from what its problem would say."""
    if type_ is not None:
        code = CODES.get(type_, type_.replace("-", "_"))
    else:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    error: dict[str, Any] = {
        "message": detail,
        "type": error_type(status, type_),
        "param": extra.get("param") or _param(extra.get("errors")),
        "code": code,
    }
    error.update({k: extra[k] for k in KEEL_MEMBERS if extra.get(k) is not None})
    return {"error": error}


def openai_error(
    status: int,
    detail: str,
    *,
    type_: str | None,
    headers: dict[str, str] | None,
    extra: dict[str, Any],
) -> JSONResponse:
    """An error in OpenAI's shape. A 422 becomes a 400, as OpenAI answers bad requests."""
    status = 400 if status == 422 else status
    headers = dict(headers or {})
    if status not in RETRIED:
        headers["x-should-retry"] = "false"
    body = error_body(status, detail, type_=type_, extra=extra)
    return JSONResponse(body, status_code=status, headers=headers)


def openai_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring OpenAI errors for `statuses`."""
    return {
        status: {"description": HTTPStatus(status).phrase, "model": OpenAIError}
        for status in statuses
    }


OPENAI_ERRORS = openai_responses(400, 401, 403, 404, 409, 413, 429, 503)
"""What any OpenAI-compatible route may answer, whatever it does."""


def install_openai_errors(app: FastAPI) -> None:
    """Answer errors on `OPENAI_PATHS` in OpenAI's shape, and say so in the OpenAPI document."""
    add_error_shape(app, OPENAI_PATHS, openai_error)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI caches this very dict, so the changes stay
        paths = document.get("paths", {})
        for path, item in paths.items():
            if path.startswith(OPENAI_PATHS):
                for operation in item.values():
                    # FastAPI's own 422 (`HTTPValidationError`): these routes answer 400.
                    operation.get("responses", {}).pop("422", None)
        if _FASTAPI_422 not in json.dumps(paths):
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _param(errors: object) -> str | None:
    """The first refused field of a validation error, as OpenAI names it (`messages.0.role`)."""
    if not isinstance(errors, list) or not errors:
        return None
    location, _, name = str(errors[0].get("field", "")).partition(".")
    # Without pydantic's names of union members (`constrained-str`, `list[ContentPart]`).
    return ".".join(p for p in (name or location).split(".") if re.fullmatch(r"\w+", p)) or None
