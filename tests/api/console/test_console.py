"""The web console at /console, driven in Debian's Chromium against a live API and workers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect
from temporalio.testing import WorkflowEnvironment

from tests.api.console.browser import (
    ADMIN,
    CHROMIUM,
    CLIENT,
    Console,
    running_console,
    screenshot,
)

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
async def console(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    async with running_console(temporal_env, tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(autouse=True)
async def no_script_errors(console: Console) -> AsyncIterator[None]:
    """Every test's pages ran without a script error or a CSP refusal."""
    yield
    assert await console.close_contexts() == []


async def _start_session(page: Page, agent: str) -> str:
    await page.goto("/console/sessions")
    await page.get_by_label("New session with").select_option(agent)
    await page.get_by_role("button", name="Start a session").click()
    await expect(page).to_have_url(re.compile(r"/console/sessions/[^/]+$"))
    await expect(page.locator(".stream-status")).to_have_text("Live")
    return page.url.rsplit("/", 1)[1]


UNLABELLED = """[...document.querySelectorAll('input, select, textarea, button, a[href]')]
  .filter(e => !e.closest('[hidden]'))
  .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label')
                 || e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 120))"""


async def _assert_labelled(page: Page) -> None:
    """Every control and link a person can reach has a name a screen reader reads."""
    assert await page.evaluate(UNLABELLED) == []
    landmarks = await page.evaluate(
        "['header', 'nav', 'main'].filter(t => !document.querySelector(t))"
    )
    assert landmarks == []


async def _send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


async def test_send_a_message_and_see_the_streamed_answer(console: Console, tmp_path: Path) -> None:
    page = await console.page()
    session_id = await _start_session(page, "assistant")
    words = " ".join(f"word{i}" for i in range(40))
    box = page.get_by_label("Message", exact=True)
    await box.fill("a first line")
    await box.press("Shift+Enter")  # a new line, not a send
    await expect(box).to_have_value("a first line\n")
    await _send(page, words)
    typing = page.locator(".message.typing .text")
    await expect(typing).to_contain_text("fake: word0")
    answer = page.locator(".message.assistant:not(.typing) .text")
    await expect(answer).to_have_text(f"fake: {words}")
    await expect(page.locator(".message.user .text")).to_have_text(words)
    await expect(page.locator(".step.turn-completed")).to_contain_text("out tokens")
    session = (await console.http.get(f"/v1/sessions/{session_id}")).json()
    run = f"/workflows/keel%2Fdefault%2F{session_id}/{session['run_id']}/history"
    await expect(page.locator(".turn .temporal")).to_have_attribute("href", re.compile(run))
    await screenshot(page, tmp_path, "console-session", docs=True)


async def _gated_call(page: Page, invoice: int = 7) -> None:
    await _start_session(page, "clerk")
    await _send(page, f'[[call lookup {{"invoice": {invoice}}}]]')
    await expect(page.locator(".pending-approvals .approval")).to_have_count(1)


async def test_approve_a_gated_tool_call_and_see_its_result(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page(reviewer=None)
    await _gated_call(page)
    card = page.locator(".pending-approvals .approval")
    await expect(card).to_contain_text('"invoice": 7')
    await expect(page.locator(".turn .pill")).to_have_text("awaiting approval")
    await screenshot(page, tmp_path, "pending")
    await card.get_by_role("button", name="Approve").click()
    # The reviewer's name is asked once, then kept.
    await page.get_by_label("Reviewer name").fill("Ann")
    await page.get_by_role("button", name="Continue").click()
    await expect(card.locator(".outcome")).to_have_text(re.compile(r"^Approved by"))
    await expect(page.locator(".step.tool-result")).to_contain_text("invoice 7: 40 EUR")
    await expect(page.locator(".message.assistant .text")).to_have_text(
        "tool results: lookup -> invoice 7: 40 EUR"
    )
    assert await page.evaluate("localStorage.getItem('keel.reviewer')") == "Ann"
    await screenshot(page, tmp_path, "approved")


async def test_reject_with_feedback(console: Console, tmp_path: Path) -> None:
    page = await console.page()
    await _gated_call(page)
    card = page.locator(".pending-approvals .approval")
    await card.get_by_role("button", name="Reject…").click()
    await card.get_by_label("Feedback for the model").fill("not this invoice")
    await card.get_by_role("button", name="Send rejection").click()
    decided = page.locator(".step.approval-decided")
    await expect(decided).to_contain_text("reject")
    await expect(decided).to_contain_text("Feedback: not this invoice")
    await expect(page.locator(".step.turn-completed")).to_have_count(1)
    await expect(page.locator(".step.tool-result")).to_contain_text("rejected")
    await screenshot(page, tmp_path, "rejected")


async def test_a_failed_turn_shows_its_error_and_the_session_goes_on(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page()
    await _start_session(page, "clerk")
    await _send(page, "[[fail 400]]")
    failed = page.locator(".step.turn-failed")
    await expect(failed).to_contain_text("scripted failure")
    await expect(page.locator(".turn .pill")).to_have_text("failed")
    await _send(page, "still there?")
    await expect(page.locator(".message.assistant .text")).to_have_text("echo: still there?")
    await screenshot(page, tmp_path, "failed")


async def test_revise_shows_the_422_inline_then_runs_good_arguments(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page()
    await _gated_call(page)
    card = page.locator(".pending-approvals .approval")
    await card.get_by_role("button", name="Revise…").click()
    editor = card.get_by_label("Arguments (JSON)")
    await editor.fill('{"invoice": ')
    await card.get_by_role("button", name="Send revision").click()
    await expect(card.get_by_role("alert")).to_contain_text("Not valid JSON")
    await editor.fill('{"invoice": "seven"}')
    await card.get_by_role("button", name="Send revision").click()
    problem = card.get_by_role("alert")
    await expect(problem).to_contain_text("invoice")
    await expect(editor).to_have_attribute("aria-invalid", "true")
    await expect(card.get_by_text("Schema of lookup")).to_be_visible()
    await _assert_labelled(page)
    await screenshot(page, tmp_path, "console-approval", docs=True)
    await editor.fill('{"invoice": 8}')
    await card.get_by_role("button", name="Send revision").click()
    await expect(card.locator(".outcome")).to_have_text(re.compile(r"^Revised by"))
    await expect(page.locator(".step.tool-result")).to_contain_text("invoice 8: 40 EUR")
    await screenshot(page, tmp_path, "revised")


async def test_a_reload_mid_stream_shows_each_step_exactly_once(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page()
    session_id = await _start_session(page, "assistant")
    text = " ".join(f"token{i}" for i in range(120))
    console.llm.enqueue_reply("", [{"name": "search", "arguments": {"query": "keel"}}])
    console.llm.enqueue_reply(text)
    resumes: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            resumes.append(r.headers.get("last-event-id"))
            if r.url.endswith(f"/v1/sessions/{session_id}/events")
            else None
        ),
    )
    await _send(page, "search for keel")
    await expect(page.locator(".message.typing .text")).to_contain_text("token3")
    await page.reload()
    await expect(page.locator(".message.assistant:not(.typing) .text")).to_have_text(text)
    for kind in ("turn.started", "tool.call", "tool.result", "message.completed", "turn.completed"):
        await expect(page.locator(f'.step[data-type="{kind}"]')).to_have_count(1)
    await expect(page.locator(".message.user")).to_have_count(1)
    await expect(page.locator(".message.assistant")).to_have_count(1)
    assert resumes and all(r is not None for r in resumes), resumes  # resumed after its last id

    # A dropped network: "Reconnecting…", then the stream comes back by itself.
    status = page.locator(".stream-status")
    await page.context.set_offline(True)
    await expect(status).to_have_text("Reconnecting…")
    await page.context.set_offline(False)
    await expect(status).to_have_text("Live", timeout=10_000)
    await _send(page, "again")
    await expect(page.locator(".message.assistant")).to_have_count(2)
    await expect(page.locator('.step[data-type="tool.result"]')).to_have_count(1)
    await screenshot(page, tmp_path, "resumed")


async def _session_with_approval(console: Console, user: str) -> tuple[str, dict[str, Any]]:
    """A clerk session of `user` whose lookup waits for a decision, started over HTTP."""
    accepted = await console.http.post(
        "/v1/chat",
        json={"message": '[[call lookup {"invoice": 9}]]', "agent": "clerk", "mode": "async"},
        headers={"X-User-Id": user},
    )
    assert accepted.status_code == 202, accepted.text
    session_id = accepted.json()["session_id"]
    for _ in range(100):
        listed = (await console.http.get(f"/v1/sessions/{session_id}/approvals")).json()
        if listed["approvals"]:
            return session_id, listed["approvals"][0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _refresh_until(page: Page, locator: Locator) -> None:
    """Press Refresh until `locator` shows: Temporal's visibility store lags a moment."""
    for _ in range(50):
        if await locator.count():
            return
        await page.get_by_role("button", name="Refresh").click()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{locator} never showed")


async def test_a_second_reviewer_sees_who_decided_first(console: Console, tmp_path: Path) -> None:
    session_id, approval = await _session_with_approval(console, "carol")
    page = await console.page(reviewer="Bob")
    await page.goto("/console/approvals")
    card = page.locator(f'.approval[data-approval-id="{approval["id"]}"]')
    await _refresh_until(page, card)  # the inbox is read from visibility, a moment behind
    await expect(card).to_contain_text("lookup")
    await expect(card.get_by_role("link")).to_have_attribute(
        "href", f"/console/sessions/{session_id}"
    )
    await screenshot(page, tmp_path, "console-inbox", docs=True)
    first = await console.http.post(
        f"/v1/sessions/{session_id}/approvals/{approval['id']}",
        json={"decision": "approve", "reviewer": "Ann"},
    )
    assert first.status_code == 200, first.text
    await card.get_by_role("button", name="Approve").click()
    await expect(card.locator(".outcome")).to_have_text("Already approved by Ann.")
    await expect(card.get_by_role("button")).to_have_count(0)
    await screenshot(page, tmp_path, "second-reviewer")


async def test_a_client_key_sees_only_its_users_sessions(console: Console, tmp_path: Path) -> None:
    ann, _ = await _session_with_approval(console, "ann")
    bob, _ = await _session_with_approval(console, "bob")
    page = await console.page(key=None)
    keys: list[str | None] = []
    page.on(
        "request",
        lambda r: keys.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
    )
    await page.goto("/console/sessions")
    await page.get_by_label("API key").fill(CLIENT)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("User id").fill("ann")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#identity")).to_have_text("user ann · key set")
    await expect(page.get_by_text("You act as user ann")).to_be_visible()
    row = page.locator(f'tr[data-session-id="{ann}"]')
    await _refresh_until(page, row)
    await expect(row).to_contain_text("ann")
    await expect(page.locator("tbody tr")).not_to_have_count(0)
    for user in await page.locator('td[data-label="User"]').all_inner_texts():
        assert user == "ann"
    await expect(page.locator(f'tr[data-session-id="{bob}"]')).to_have_count(0)
    assert f"Bearer {CLIENT}" in keys and ADMIN not in str(keys)
    assert CLIENT not in page.url
    await screenshot(page, tmp_path, "client-key")


async def test_sessions_list_filters_pages_and_shows_pending_approvals(
    console: Console, tmp_path: Path
) -> None:
    session_id, _ = await _session_with_approval(console, "dora")
    for agent in ("assistant", "triage"):
        created = await console.http.post("/v1/sessions", json={"agent": agent, "user_id": "dora"})
        assert created.status_code == 201, created.text
    page = await console.page()
    await page.goto("/console/sessions?user_id=dora")
    rows = page.locator("tbody tr")
    for _ in range(50):  # Temporal's visibility store lists new sessions a moment later
        if await rows.count() == 3:
            break
        await page.get_by_role("button", name="Refresh").click()
        await asyncio.sleep(0.1)
    row = page.locator(f'tr[data-session-id="{session_id}"]')
    await expect(row.locator('td[data-label="Agent"]')).to_have_text("clerk")
    await expect(row.locator(".badge")).to_contain_text("1")
    await expect(row.locator('td[data-label="Last activity"] time')).to_be_visible()
    await page.get_by_label("Status").select_option("closed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=closed"))
    await expect(row).to_have_count(0)
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Agent", exact=True).select_option("clerk")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(row).to_have_count(1)
    await screenshot(page, tmp_path, "filtered")

    # Pages follow next_page_token, and come back.
    await page.goto("/console/sessions?user_id=dora&limit=2")
    await expect(rows).to_have_count(2)
    first = await rows.first.get_attribute("data-session-id")
    await page.get_by_role("button", name="Next page").click()
    await expect(rows).to_have_count(1)
    await expect(page.get_by_role("button", name="Next page")).to_have_count(0)
    await page.get_by_role("button", name="Previous page").click()
    await expect(rows.first).to_have_attribute("data-session-id", first or "")

    await page.goto("/console/sessions")
    await expect(rows.nth(2)).to_be_visible()
    await _assert_labelled(page)
    await screenshot(page, tmp_path, "console-sessions", docs=True)


async def test_agents_and_triggers_pages(console: Console, tmp_path: Path) -> None:
    page = await console.page()
    await page.goto("/console/agents")
    clerk = page.locator('tr[data-agent="clerk"]')
    await expect(clerk).to_contain_text("scripted")
    await expect(clerk).to_contain_text("lookup")
    await expect(page.locator('tr[data-agent="assistant"]')).to_contain_text("search")
    await screenshot(page, tmp_path, "console-agents", docs=True)
    await page.get_by_role("link", name="Triggers").click()
    trigger = page.locator('[data-trigger="new-ticket"]')
    data = trigger.get_by_label("Data (JSON)")
    await trigger.get_by_role("button", name="Fire new-ticket").click()
    await expect(trigger.get_by_role("status")).to_contain_text("data.title")
    await data.fill('{"title": "Printer on fire"}')
    await trigger.get_by_role("button", name="Fire new-ticket").click()
    await expect(trigger.get_by_role("status")).to_contain_text("Fired")
    await _assert_labelled(page)
    await trigger.get_by_role("link").click()
    await expect(page.locator(".message.user .text")).to_have_text("New ticket: Printer on fire")
    await screenshot(page, tmp_path, "triggers")


async def test_a_hand_off_shows_in_the_timeline(console: Console, tmp_path: Path) -> None:
    page = await console.page()
    await _start_session(page, "triage")
    await _send(page, '[[call clerk {"message": "hello"}]]')
    await expect(page.locator(".step.handoff")).to_contain_text("triage → clerk")
    await expect(page.locator(".message.assistant .text")).to_contain_text("echo: hello")
    # The specialist runs in a child workflow, not a session of the API: the Temporal UI shows it.
    child = page.locator(".step.handoff").get_by_role("link", name="child session")
    href = await child.get_attribute("href")
    assert href is not None and "/workflows/keel%2F" in href and href.endswith("%2F1%2Fcall_1")
    await screenshot(page, tmp_path, "handoff")


async def test_the_console_is_usable_at_360_px(console: Console, tmp_path: Path) -> None:
    page = await console.page(width=360)
    await page.goto("/console/sessions")
    await page.keyboard.press("Tab")  # the first stop skips to the content
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await _gated_call(page)
    conversation = await page.locator(".conversation").bounding_box()
    steps = await page.locator(".timeline").bounding_box()
    assert conversation and steps and steps["y"] >= conversation["y"] + conversation["height"]
    wide = await page.evaluate(
        """[...document.querySelectorAll('body *')]
             .filter(e => e.getBoundingClientRect().right > 361)
             .map(e => `${e.tagName}.${e.className} ${e.getBoundingClientRect().right}`)"""
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360, wide
    # Keyboard only: the approval's buttons are reached with Tab, and focus is visible.
    approve = page.locator(".pending-approvals").get_by_role("button", name="Approve")
    await approve.focus()
    outline = await approve.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    await screenshot(page, tmp_path, "console-mobile", docs=True)
    await approve.press("Enter")
    await expect(page.locator(".step.tool-result")).to_contain_text("invoice 7")
