"""The agent loop: tool calls, refusals, step limits, and re-seeding a lost store."""

from __future__ import annotations

from temporalio.client import Client

from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import SqliteTranscriptStore, TranscriptStore
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session


def _scripted(**agent: object) -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", **agent}],
            "python_tools": ["tests.fakes.tools"],
        },
        env={},
    )


async def test_a_tool_the_agent_may_not_use_is_refused_and_the_turn_goes_on(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _scripted()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, 'what now? [[call secret.erase {"all": true}]]')
    assert result.status == "completed"
    assert result.message is not None
    assert "tool 'secret.erase' is not available to agent 'assistant'" in result.message.content
    roles = [(m.role, m.is_error) for m in await store.messages(handle.id)]
    assert roles == [("user", False), ("assistant", False), ("tool", True), ("assistant", False)]


async def test_a_model_that_never_stops_calling_tools_fails_at_the_step_limit(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _scripted(max_steps=1, tools=["lookup"])
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        # The scripted model asks for the tool even when none is offered.
        result = await chat(handle, "[[call lookup]] [[call lookup]]")
        after = await chat(handle, "still there?")
    assert result.status == "failed"
    assert result.error == "the agent reached its step limit (max_steps=1) without a final answer"
    assert after.status == "completed", "the transcript stays valid for the next turn"
    tool_results = [m for m in await store.messages(handle.id) if m.role == "tool"]
    assert all(m.is_error for m in tool_results)


async def test_a_lost_store_is_reseeded_from_the_workflow(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        await chat(handle, "one")
        await chat(handle, "two")
    fresh = SqliteTranscriptStore(settings.resolved_data_dir / "new.db")
    try:
        async with running_workers(client, settings, formation, fresh):
            result = await chat(handle, "three")
        assert result.message is not None and result.message.content == "echo: three"
        assert [m.content for m in await fresh.messages(handle.id)] == [
            "one",
            "echo: one",
            "two",
            "echo: two",
            "three",
            "echo: three",
        ]
    finally:
        await fresh.close()
