"""The OpenAPI document, completed with what FastAPI cannot see: who needs a key, the limits
this process enforces, and links from the operations that return ids to those that take them.

A client (or a fuzzer) that follows the document should never meet a refusal the document
does not announce; these additions are how the document says so. A 405's `Allow` is read
from the document too, so the two agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.deps import AppState
from api.problems import error_response

BEARER = "HTTPBearer"
"""The security scheme FastAPI names after `api.deps.bearer`."""
PUBLIC = {("/health", "get"), ("/v1/triggers/{name}", "post")}
"""Operations that may be called without a key: `/health` answers in less detail, and a
signed trigger needs its signature only (an unsigned one still needs a key: a 401)."""
MESSAGE_FIELDS = (
    ("ChatRequest", "message"),
    ("RunAgent", "message"),
    ("ChatMessageIn", "content"),
    ("ContentPart", "text"),
)
"""Text fields (schema, property) the API measures against its message limits."""


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: values from one operation's answer that another operation takes."""

    target: str
    """`METHOD /path` of the operation the values go to."""
    parameters: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    """Merged into the body generated for the target (runtime expressions allowed)."""


_IN_SESSION = "$response.body#/session_id"
_TURN_LINKS = {
    "ReadSession": Link("GET /v1/sessions/{session_id}", {"session_id": _IN_SESSION}),
    "ReadTurn": Link(
        "GET /v1/sessions/{session_id}/turns/{turn_id}",
        {"session_id": _IN_SESSION, "turn_id": "$response.body#/turn_id"},
    ),
    "ChatAgain": Link("POST /v1/chat", body={"session_id": _IN_SESSION, "agent": None}),
    "ListApprovals": Link("GET /v1/sessions/{session_id}/approvals", {"session_id": _IN_SESSION}),
    "CloseSession": Link("DELETE /v1/sessions/{session_id}", {"session_id": _IN_SESSION}),
}
"""From an operation that answers with a turn (sync or accepted) to what can follow it."""
_SESSION_ID = "$response.body#/id"
_SESSION_HEADER = "$response.header.X-Keel-Session-Id"
_SESSION_LINKS = {
    "ReadSession": Link("GET /v1/sessions/{session_id}", {"session_id": _SESSION_ID}),
    # A chat in an existing session may not name an agent: the link says none.
    "Chat": Link("POST /v1/chat", body={"session_id": _SESSION_ID, "agent": None}),
    "RunAgent": Link(
        "POST /v1/agents/{name}/run",
        {"name": "$response.body#/agent"},
        body={"session_id": _SESSION_ID},
    ),
    "ListApprovals": Link("GET /v1/sessions/{session_id}/approvals", {"session_id": _SESSION_ID}),
    "Fork": Link("POST /v1/sessions/{session_id}/fork", {"session_id": _SESSION_ID}),
    "CloseSession": Link("DELETE /v1/sessions/{session_id}", {"session_id": _SESSION_ID}),
}
"""From an operation that answers with a new session to what can follow it."""
LINKS: dict[tuple[str, str], dict[str, Link]] = {
    ("POST /v1/sessions", "201"): _SESSION_LINKS,
    ("POST /v1/sessions/{session_id}/fork", "201"): _SESSION_LINKS,
    **{
        (operation, status): _TURN_LINKS
        for operation in ("POST /v1/chat", "POST /v1/agents/{name}/run", "POST /v1/triggers/{name}")
        for status in ("200", "202")
    },
    ("GET /v1/sessions", "200"): {
        "ReadSession": Link(
            "GET /v1/sessions/{session_id}", {"session_id": "$response.body#/sessions/0/id"}
        ),
        # A token is good for the filters it was issued with; with others it names no page.
        "NextPage": Link("GET /v1/sessions", {"page_token": "$response.body#/next_page_token"}),
    },
    ("GET /v1/sessions/{session_id}", "200"): {
        "CloseSession": Link("DELETE /v1/sessions/{session_id}", {"session_id": _SESSION_ID}),
    },
    ("DELETE /v1/sessions/{session_id}", "200"): {
        # Closed is not gone: a closed session stays readable.
        "ReadSession": Link("GET /v1/sessions/{session_id}", {"session_id": _SESSION_ID}),
    },
    ("GET /v1/sessions/{session_id}/approvals", "200"): {
        "Decide": Link(
            "POST /v1/sessions/{session_id}/approvals/{approval_id}",
            {
                "session_id": "$request.path.session_id",
                "approval_id": "$response.body#/approvals/0/id",
            },
        ),
    },
    ("GET /v1/agents", "200"): {
        "ReadAgent": Link("GET /v1/agents/{name}", {"name": "$response.body#/agents/0/name"}),
        "RunAgent": Link("POST /v1/agents/{name}/run", {"name": "$response.body#/agents/0/name"}),
    },
    ("GET /v1/models", "200"): {
        "RetrieveModel": Link("GET /v1/models/{model}", {"model": "$response.body#/data/0/id"}),
        "ChatCompletion": Link(
            "POST /v1/chat/completions", body={"model": "$response.body#/data/0/id"}
        ),
    },
    ("POST /v1/chat/completions", "200"): {
        # The session is named in a header, and so is the one to continue.
        "ContinueSession": Link(
            "POST /v1/chat/completions",
            {"X-Keel-Session-Id": _SESSION_HEADER},
            body={"model": "$request.body#/model"},
        ),
        "ReadSession": Link("GET /v1/sessions/{session_id}", {"session_id": _SESSION_HEADER}),
    },
    ("GET /v1/triggers", "200"): {
        "Fire": Link("POST /v1/triggers/{name}", {"name": "$response.body#/triggers/0/name"}),
    },
    ("GET /v1/memory", "200"): {
        "DeleteMemory": Link(
            "DELETE /v1/memory/{memory_id}", {"memory_id": "$response.body#/memories/0/id"}
        ),
        "NextPage": Link("GET /v1/memory", {"offset": "$response.body#/next_offset"}),
    },
}
"""Links by (source operation, status): create → chat → read → close, lists → items."""


def install_openapi(app: FastAPI, state: AppState) -> None:
    """Complete the app's OpenAPI document (built once, on first request) as this module says."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI caches this very dict, so the additions stay
        _drop_null_parameters(document)
        _declare_security(document, keys=state.keys.enabled)
        _declare_message_limit(document, _message_limit(state))
        _add_links(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette names the methods of the first route that matches the path only; the
        # path may be served by several (GET and POST /v1/sessions).
        allowed = allowed_methods(openapi(), request.url.path)
        headers = {**(exc.headers or {}), **({"Allow": ", ".join(allowed)} if allowed else {})}
        return error_response(request.scope, 405, str(exc.detail), headers=headers)


def allowed_methods(document: dict[str, Any], path: str) -> list[str]:
    """The methods the document has for `path`, from its most specific template.

    `/v1/memory/forget` is the forget operation's path, though `/v1/memory/{memory_id}`
    matches it too: of the templates that match, those with the fewest parameters count.
    """
    matches: list[tuple[int, list[str]]] = []
    for template, item in document.get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            matches.append((template.count("{"), [m.upper() for m in item]))
    fewest = min((n for n, _ in matches), default=0)
    return sorted({m for n, methods in matches if n == fewest for m in methods})


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every operation of the document by `METHOD /path`."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
    }


def _drop_null_parameters(document: dict[str, Any]) -> None:
    """State optional parameters as their type alone: a query or a header cannot be null.

    FastAPI writes `str | None` parameters as `anyOf: [string, null]`; a client
    following that would send the text `null`. Leaving the parameter out is how
    a request says "none", and `required: false` already says it may.
    """
    for operation in _operations(document).values():
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            variants = [v for v in schema.get("anyOf", ()) if v != {"type": "null"}]
            if "anyOf" in schema and len(variants) == 1:
                del schema["anyOf"]
                schema.update(variants[0])


def _declare_security(document: dict[str, Any], *, keys: bool) -> None:
    """Say where a key is optional: everywhere in dev mode (no keys), on public routes always.

    `{}` among the requirements is OpenAPI's "no credentials needed"; without it,
    a dev-mode API that serves callers with no `Authorization` would contradict
    its own document.
    """
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            security = operation.get("security")
            if security is None:
                continue
            if not keys or (path, method) in PUBLIC:
                operation["security"] = [{}, *(s for s in security if s)]


def _message_limit(state: AppState) -> int:
    """The longest message this API takes: the smaller of its own and the formation's limit."""
    limits = (state.settings.max_message_chars, state.formation.sessions.max_message_chars)
    return min((n for n in limits if n), default=1_000_000)


def _declare_message_limit(document: dict[str, Any], limit: int) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for name, field_name in MESSAGE_FIELDS:
        text = schemas.get(name, {}).get("properties", {}).get(field_name)
        if text is None:
            continue
        for variant in (text, *text.get("anyOf", ())):
            if variant.get("type") == "string":
                variant["maxLength"] = min(limit, variant.get("maxLength", limit))


def _add_links(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for (source, status), links in LINKS.items():
        response = operations[source]["responses"].get(status)
        if response is None:
            raise KeyError(f"{source} declares no {status} answer to link from")
        response["links"] = {name: _link(operations, link) for name, link in links.items()}


def _link(operations: dict[str, dict[str, Any]], link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": operations[link.target]["operationId"]}
    if link.parameters:
        out["parameters"] = dict(link.parameters)
    if link.body is not None:
        out["requestBody"] = dict(link.body)
    return out
