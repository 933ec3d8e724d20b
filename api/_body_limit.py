"""ASGI middleware that refuses request bodies over a size, counting the bytes as they arrive."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import error_response


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit.

    An `HTTPException` because FastAPI re-raises those from body parsing
    unchanged, where any other error would become a 400.
    """

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    """Answer 413 problem+json to a body over `max_bytes`.

    A declared `Content-Length` over the limit is refused before the app runs;
    a chunked or under-declared body is counted as it streams in, so a client
    cannot get past the limit by lying about the length.

    Args:
        app: the wrapped app.
        max_bytes: the limit; 0 disables the middleware.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_bytes:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(scope, self.max_bytes)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Reached only when the app read the body outside FastAPI's parsing.
            if started:
                raise
            await _too_large(scope, self.max_bytes)(scope, receive, send)


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Limit request bodies to `max_bytes` (0: no limit), answering 413 problem+json."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _too_large(request.scope, max_bytes)


def _too_large(scope: Scope, limit: int) -> JSONResponse:
    return error_response(
        scope,
        413,
        f"the request body is over the limit of {limit} bytes",
        type_="body-too-large",
        # The unread rest of the body makes the connection unusable for another request.
        headers={"Connection": "close"},
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
