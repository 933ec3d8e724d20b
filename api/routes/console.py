"""`/console`: the web console, static files shipped in the package, served under a strict CSP.

The page is public (it holds no data); every call it makes to `/v1` carries the
key the person types in. Routing is by path: `/console/sessions/{id}` and the
other pages all answer the same `index.html`, and the app reads the path.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Response

from api.problems import Problem

router = APIRouter(prefix="/console", include_in_schema=False)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""Nothing inline, nothing from another origin: the console works offline and cannot be
made to run a script it did not ship."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSET = re.compile(r"^(?:[a-z0-9_-]+/)*[a-z0-9_-]+\.(?:js|css|svg)$")
"""Asset paths: lower-case names in folders, a known suffix, so no `..` can reach elsewhere."""


def console_files() -> Traversable:
    """The console's folder inside the installed `api` package."""
    return resources.files("api") / "console"


def _send(file: Traversable, suffix: str) -> Response:
    return Response(
        content=file.read_bytes(),
        media_type=CONTENT_TYPES[suffix],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # Files change only with the package; revalidating keeps an upgrade visible.
            "Cache-Control": "no-cache",
        },
    )


@router.get("/assets/{path:path}")
async def console_asset(path: str) -> Response:
    """A script, style sheet or picture of the console; 404 for anything else."""
    if not _ASSET.match(path):
        raise Problem(404, "no such console file", type_="not-found")
    file = console_files() / "assets"
    for part in path.split("/"):
        file = file / part
    if not file.is_file():
        raise Problem(404, "no such console file", type_="not-found")
    return _send(file, "." + path.rsplit(".", 1)[1])


@router.get("")
@router.get("/{page:path}")
async def console_page(page: str = "") -> Response:
    """The console's single page, for `/console` and every deep link under it."""
    return _send(console_files() / "index.html", ".html")
