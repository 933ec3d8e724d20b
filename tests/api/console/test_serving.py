"""`/console` serves the packaged static files, public, offline, under a strict CSP."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from api.routes.console import CONTENT_TYPES, console_files

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "api" / "console"


def _files() -> list[Path]:
    return sorted(p for p in CONSOLE.rglob("*") if p.is_file())


async def test_the_page_and_every_deep_link_answer_the_app(api: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/", "/console/sessions/abc", "/console/approvals"):
        page = await api.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="/console/assets/app.js">' in page.text


async def test_assets_have_their_content_types_and_nothing_else_is_served(
    api: httpx.AsyncClient,
) -> None:
    script = await api.get("/console/assets/pages/session.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    style = await api.get("/console/assets/console.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    for bad in (
        "/console/assets/nope.js",
        "/console/assets/%2e%2e/index.html",
        "/console/assets/..%2f..%2froutes/console.py",
        "/console/assets/README.md",
    ):
        assert (await api.get(bad)).status_code == 404, bad
    # A client that resolves `..` itself asks for a deep link: the page, not the file.
    climbed = await api.get("/console/assets/../../routes/console.py")
    assert "APIRouter" not in climbed.text


async def test_the_console_is_public_but_not_in_the_openapi_document(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    assert not [p for p in document["paths"] if p.startswith("/console")]


def test_no_file_reaches_another_origin_or_runs_inline() -> None:
    remote = re.compile(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}", re.I)
    for path in _files():
        text = path.read_text(encoding="utf-8")
        assert not remote.search(text), f"{path.name} names another origin"
        assert "innerHTML" not in text and "eval(" not in text, path.name
    html = (CONSOLE / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "style=" not in html


def test_every_console_file_ships_in_the_package() -> None:
    """The package data globs name every file, and the installed package reads them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["api"]
    installed = console_files()
    for path in _files():
        relative = path.relative_to(ROOT / "api").as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), f"{relative} is not package data"
        assert path.suffix in CONTENT_TYPES, relative
        resource = installed.joinpath(*path.relative_to(CONSOLE).parts)
        assert resource.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("name", ["index.html", "assets/app.js", "assets/console.css"])
def test_importlib_resources_finds(name: str) -> None:
    assert console_files().joinpath(*name.split("/")).is_file()
