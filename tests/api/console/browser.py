"""A live Keel (API, workers, the fake model) and Debian's Chromium, for the console's tests."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from temporalio.testing import WorkflowEnvironment

from keel.deltas import InProcessDeltaBus
from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.api.live import live_api
from tests.fakes.llm_server import FakeLLMServer

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium (`apt-get install chromium`): the tests never download a browser."""
ADMIN = "console-admin-0123456789abcdef"
CLIENT = "console-client-0123456789abcdef"
LLM_KEY_ENV = "KEEL_CONSOLE_TEST_LLM_KEY"
SCREENSHOTS_ENV = "KEEL_CONSOLE_SCREENSHOTS"
"""Set to a folder (e.g. `docs/img`) to also write the docs' screenshots there."""
ROOT = Path(__file__).resolve().parents[3]


def console_formation(llm: FakeLLMServer) -> Formation:
    """`assistant` streams from the fake model; `clerk` (scripted) calls `lookup`, which waits
    for approval; `triage` (scripted) hands off to `clerk`; a trigger starts a clerk turn."""
    return formation_from_data(
        {
            "id": "console",
            "models": {
                "default": {
                    "provider": "openai",
                    "model": "fake",
                    "base_url": llm.openai_base_url,
                    "api_key_env": LLM_KEY_ENV,
                },
                "scripted": {"provider": "scripted"},
            },
            "agents": [
                {"name": "assistant", "description": "Answers questions", "tools": ["search"]},
                {
                    "name": "clerk",
                    "description": "Looks up invoices",
                    "model": "scripted",
                    "tools": ["lookup"],
                },
                {
                    "name": "triage",
                    "role": "coordinator",
                    "description": "Routes requests",
                    "model": "scripted",
                    "routes": ["clerk"],
                },
            ],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
            "triggers": [
                {"name": "new-ticket", "agent": "clerk", "template": "New ticket: {{ data.title }}"}
            ],
        },
        env={},
    )


@dataclass
class Console:
    """The served API (its base URL and an admin client) with the browser that drives it."""

    url: str
    http: httpx.AsyncClient
    llm: FakeLLMServer
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    """The contexts the running test opened; `close_contexts` closes them."""

    async def page(
        self, *, key: str | None = ADMIN, reviewer: str | None = "Ann", width: int = 1280
    ) -> Page:
        """A fresh browser context's page, the key (and reviewer name) already given."""
        context = await self.browser.new_context(
            base_url=self.url, viewport={"width": width, "height": 900}
        )
        self.contexts.append(context)
        script = ""
        if key:
            script += f"sessionStorage.setItem('keel.key', {key!r});"
        if reviewer:
            script += f"localStorage.setItem('keel.reviewer', {reviewer!r});"
        if script:
            await context.add_init_script(script)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        context.keel_errors = errors  # type: ignore[attr-defined]
        return page

    async def close_contexts(self) -> list[str]:
        """Close the test's contexts; the script errors and CSP refusals their pages reported."""
        errors = [e for c in self.contexts for e in errors_of(c)]
        for context in self.contexts:
            await context.close()
        self.contexts.clear()
        return errors


def errors_of(context: BrowserContext) -> list[str]:
    """Script errors and CSP refusals the page reported."""
    errors: list[str] = getattr(context, "keel_errors", [])
    return errors


async def screenshot(page: Page, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    """Save `name`.png in the test's folder, and in $KEEL_CONSOLE_SCREENSHOTS for the docs."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get(SCREENSHOTS_ENV)
    if docs and folder:
        target = Path(folder) if Path(folder).is_absolute() else ROOT / folder
        target.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(target / f"{name}.png"), full_page=True)
    return path


@contextlib.asynccontextmanager
async def running_console(
    temporal_env: WorkflowEnvironment, data_dir: Path
) -> AsyncIterator[Console]:
    """Workers, the API with an admin and a client key, the fake model, and Chromium."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=data_dir,
        temporal_address=temporal_env.client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        max_sessions_per_user=0,
        admin_keys=ADMIN,
        client_keys=CLIENT,
        sse_heartbeat_s=1,
    )
    previous = os.environ.get(LLM_KEY_ENV)
    os.environ[LLM_KEY_ENV] = "k"
    store = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
    try:
        async with (
            FakeLLMServer(token_delay_s=0.02) as llm,
            live_api(
                temporal_env.client,
                settings,
                console_formation(llm),
                store,
                deltas=InProcessDeltaBus(),
            ) as api,
            async_playwright() as playwright,
        ):
            api.http.headers["Authorization"] = f"Bearer {ADMIN}"
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                yield Console(str(api.http.base_url).rstrip("/"), api.http, llm, browser)
            finally:
                await browser.close()
    finally:
        await store.close()
        if previous is None:
            os.environ.pop(LLM_KEY_ENV, None)
        else:
            os.environ[LLM_KEY_ENV] = previous
