"""The web console at /console, driven in Debian's Chromium against a live API and workers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from temporalio.testing import WorkflowEnvironment

from tests.api.console.browser import CHROMIUM, Console, errors_of, running_console, screenshot

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
async def console(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    async with running_console(temporal_env, tmp_path_factory.mktemp("console")) as running:
        yield running


async def _start_session(page: Page, agent: str) -> str:
    await page.goto("/console/sessions")
    await page.get_by_label("Agent", exact=True).first.select_option(agent)
    await page.get_by_role("button", name="Start a session").click()
    await expect(page).to_have_url(re.compile(r"/console/sessions/[^/]+$"))
    await expect(page.locator(".stream-status")).to_have_text("Live")
    return page.url.rsplit("/", 1)[1]


async def _send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


async def test_send_a_message_and_see_the_streamed_answer(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page()
    await _start_session(page, "assistant")
    words = " ".join(f"word{i}" for i in range(40))
    await _send(page, words)
    typing = page.locator(".message.typing .text")
    await expect(typing).to_contain_text("fake: word0")
    answer = page.locator(".message.assistant:not(.typing) .text")
    await expect(answer).to_have_text(f"fake: {words}")
    await expect(page.locator(".message.user .text")).to_have_text(words)
    await expect(page.locator(".step.turn-completed")).to_contain_text("out tokens")
    await screenshot(page, tmp_path, "console-session", docs=True)
    assert errors_of(page.context) == []
