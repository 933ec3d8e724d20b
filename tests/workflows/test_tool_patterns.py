"""Tool wildcards in whole turns: `server.*` offers and allows every tool of a server, an
approval policy may name a pattern, and a server's changed tool list is picked up."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from keel.approvals import ApprovalDecisionInput
from keel.formation import FormationError, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.mcp_servers import PROBE, TIME
from tests.workflows.helpers import chat, pending_approval, send, start_session, wait_for_turn

CONVERT = (
    '[[call time.convert_time {"source_timezone": "UTC", "time": "12:00",'
    ' "target_timezone": "Europe/Paris"}]]'
)


def _formation(tools: list[str], *, approvals: dict[str, str] | None = None, **model: object):
    return formation_from_data(
        {
            "models": {"default": model or {"provider": "scripted"}},
            "agents": [{"name": "clerk", "tools": tools}],
            "mcp_servers": [TIME.model_dump(exclude_defaults=True), PROBE.model_dump()],
            "python_tools": ["tests.fakes.python_tools"],
            "approvals": {"tools": approvals or {}},
        },
        env={},
    )


async def test_a_server_pattern_allows_its_tools_and_a_pattern_policy_gates_some(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(["time.*"], approvals={"time.convert_*": "always"})
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(
            handle,
            '[[call time.get_current_time {"timezone": "UTC"}]] [[call add {"a": 1}]]',
        )
        gated = await send(handle, CONVERT)
        approval = await pending_approval(handle)
        await handle.respond_to_approval(
            ApprovalDecisionInput(approval_id=approval.id, decision="approve")
        )
        converted = await wait_for_turn(handle, gated)

    assert result.message is not None
    clock, refused = result.message.content.removeprefix("tool results: ").split("; ")
    assert clock.startswith("time.get_current_time -> {")  # ran, through the pattern
    assert refused == "add -> tool 'add' is not available to agent 'clerk'"  # `add` is not time.*
    assert approval.tool == "time.convert_time"
    assert converted.status == "completed" and converted.message is not None
    assert converted.message.content.startswith("tool results: time.convert_time -> {")


async def test_the_model_is_offered_what_a_pattern_names_now_even_after_the_list_changes(
    client: Client, settings: Settings, store: TranscriptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "fake-key")
    async with FakeLLMServer() as llm:
        formation = _formation(
            ["probe.*"],
            provider="openai",
            model="fake",
            base_url=llm.openai_base_url,
            api_key_env="FAKE_LLM_KEY",
        )
        llm.enqueue_reply(tool_calls=[{"name": "probe__grow", "arguments": {"name": "fresh"}}])
        llm.enqueue_reply("grown")
        llm.enqueue_reply("and now?")
        async with running_workers(client, settings, formation, store):
            handle = await start_session(client, settings, formation)
            assert (await chat(handle, "grow a tool")).status == "completed"
            await asyncio.sleep(1)  # the server's notification travels on its own
            assert (await chat(handle, "what can you do?")).status == "completed"
        offered = [
            {tool["function"]["name"] for tool in request.body.get("tools", [])}
            for request in llm.requests
        ]

    assert {"probe__grow", "probe__sleep", "probe__header"} <= offered[0]
    assert "probe__fresh" not in offered[0]
    assert "probe__fresh" in offered[2]


async def test_a_pattern_that_matches_no_tool_stops_the_worker(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(["time.*", "time.nothing_*", "nobody_*"])
    with pytest.raises(FormationError) as caught:
        async with running_workers(client, settings, formation, store):
            pytest.fail("the workers must not start")

    assert str(caught.value).splitlines() == [
        "agents[0] (clerk).tools[1]: tool pattern 'time.nothing_*' matches no tool",
        "agents[0] (clerk).tools[2]: tool pattern 'nobody_*' matches no tool",
    ]


def test_only_a_tool_s_part_may_be_a_pattern() -> None:
    with pytest.raises(FormationError, match=r"only the tool part may be a pattern"):
        _formation(["*.read"])
