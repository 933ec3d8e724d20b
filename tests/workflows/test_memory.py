"""Memory in sessions: recall across sessions per user, `remember`, references and summaries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from keel.events import EVENTS_TOPIC, SessionEvent
from keel.formation import Formation, formation_from_data
from keel.memory import MemoryScope, NewMemory, VectorMemory, memory_id
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore, open_store
from tests._postgres import postgres_schema
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.workflows.helpers import chat, start_session


def _formation(model: dict[str, Any], **memory: Any) -> Formation:
    return formation_from_data(
        {
            "models": {"default": model},
            "agents": [{"name": "assistant", "tools": memory.pop("tools", [])}],
            "python_tools": ["tests.fakes.tools"],
            "memory": {"vector": {"enabled": True}, **memory},
        },
        env={},
    )


async def _events(client: Client, handle: SessionHandle, turns: int) -> list[SessionEvent]:
    """The session's events up to its `turns`-th `turn.completed`."""
    stream = WorkflowStreamClient.create(client, handle.id)
    events: list[SessionEvent] = []
    async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
        events.append(item.data)
        if sum(e.type == "turn.completed" for e in events) == turns:
            return events
    return events


def _system_prompt(server: FakeLLMServer) -> str:
    messages = server.requests[-1].body["messages"]
    return "".join(m["content"] for m in messages if m["role"] == "system")


@pytest.fixture
async def fake_llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TranscriptStore]:
    """The transcript store on each back end."""
    if request.param == "sqlite":
        store = open_store("sqlite:///keel.db", data_dir=tmp_path)
        yield store
        await store.close()
        return
    async with postgres_schema() as url:
        store = open_store(url, data_dir=tmp_path)
        yield store
        await store.close()


async def test_a_fact_told_in_one_session_is_recalled_for_that_user_only(
    client: Client,
    settings: Settings,
    any_store: TranscriptStore,
    vector_memory: VectorMemory,
    fake_llm: FakeLLMServer,
) -> None:
    formation = _formation(
        {"provider": "openai", "model": "fake", "base_url": fake_llm.openai_base_url}
    )
    async with running_workers(client, settings, formation, any_store, vector_memory=vector_memory):
        told = await start_session(client, settings, formation, user_id="ann")
        assert (await chat(told, "My favourite colour is green.")).status == "completed"
        assert "green" not in _system_prompt(fake_llm)
        # The answer comes before the memory write; the turn's events end after it.
        stored = [e for e in await _events(client, told, 1) if e.type == "memory.stored"]

        later = await start_session(client, settings, formation, user_id="ann")
        await chat(later, "Which colour do I like best?")
        assert "favourite colour is green" in _system_prompt(fake_llm)

        stranger = await start_session(client, settings, formation, user_id="bob")
        await chat(stranger, "Which colour do I like best?")
        assert "green" not in _system_prompt(fake_llm)

        recalled = [e for e in await _events(client, later, 1) if e.type == "memory.recalled"]
    assert [m["kind"] for m in stored[0].data["memories"]] == ["exchange"]
    assert "green" in recalled[0].data["memories"][0]["text"]
    assert sorted(await any_store.user_sessions("test", "ann")) == sorted([told.id, later.id])


async def test_remember_stores_a_fact_that_later_sessions_recall(
    client: Client, settings: Settings, store: TranscriptStore, vector_memory: VectorMemory
) -> None:
    formation = _formation({"provider": "scripted"})
    fact = "The user is allergic to peanuts."
    async with running_workers(client, settings, formation, store, vector_memory=vector_memory):
        first = await start_session(client, settings, formation, user_id="cy")
        result = await chat(first, f'[[call remember {{"fact": "{fact}"}}]] [[say Noted.]]')
        assert result.message is not None and result.message.content == "Noted."
        events = await _events(client, first, 1)

        second = await start_session(client, settings, formation, user_id="cy")
        await chat(second, "Which foods should I avoid?")
        recalled = [e for e in await _events(client, second, 1) if e.type == "memory.recalled"]

    types = [e.type for e in events]
    assert types.index("tool.call") < types.index("memory.stored") < types.index("tool.result")
    tool_message = (await store.messages(first.id))[2]
    assert tool_message.role == "tool" and tool_message.content == f"Remembered: {fact}"
    facts = [m for m in recalled[0].data["memories"] if m["kind"] == "fact"]
    assert [m["text"] for m in facts] == [fact]
    listed, _ = await vector_memory.list(
        MemoryScope(tenant="test", user_id="cy", formation="default")
    )
    assert sorted(m.kind for m in listed) == ["exchange", "exchange", "fact"]


async def test_facts_can_be_drawn_from_each_turn(
    client: Client, settings: Settings, store: TranscriptStore, vector_memory: VectorMemory
) -> None:
    formation = _formation(
        {"provider": "scripted"}, vector={"enabled": True, "extract_facts": True}
    )
    async with running_workers(client, settings, formation, store, vector_memory=vector_memory):
        handle = await start_session(client, settings, formation, user_id="ida")
        # The scripted model answers the extraction prompt as it answered the turn.
        await chat(handle, "I moved to Oslo. [[say - The user lives in Oslo.]]")
        stored = [e for e in await _events(client, handle, 1) if e.type == "memory.stored"]

    assert [m["kind"] for m in stored[0].data["memories"]] == ["exchange", "fact"]
    listed, _ = await vector_memory.list(
        MemoryScope(tenant="test", user_id="ida", formation="default")
    )
    assert "The user lives in Oslo." in [m.text for m in listed if m.kind == "fact"]


async def _history_bytes(handle: SessionHandle) -> int:
    history = await handle.workflow.fetch_history()
    return sum(event.ByteSize() for event in history.events)


async def test_a_1_mb_tool_result_leaves_less_than_4_kb_in_history(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
) -> None:
    formation = _formation({"provider": "scripted"}, tools=["big"], vector={"enabled": False})
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        sizes = [await _history_bytes(handle)]
        for size in (10, 1_000_000):
            result = await chat(handle, f'[[call big {{"size": {size}}}]] [[say done]]')
            assert result.status == "completed"
            sizes.append(await _history_bytes(handle))
        events = await _events(client, handle, 2)

    small_turn, big_turn = (after - before for before, after in pairwise(sizes))
    assert big_turn - small_turn < 4 * 1024, (small_turn, big_turn)
    tool_message = [m for m in await store.messages(handle.id) if m.role == "tool"][-1]
    assert tool_message.ref is not None and len(tool_message.content) < 1024
    assert await store.get_reference(handle.id, tool_message.ref) == "x" * 1_000_000
    result_event = [e for e in events if e.type == "tool.result"][-1]
    assert result_event.data["ref"] == tool_message.ref
    assert result_event.data["glimpse"] == tool_message.content

    # The model may read on with the built-in read_reference tool.
    read = {"ref": tool_message.ref, "offset": 999_990, "length": 100}
    async with running_workers(client, settings, formation, store):
        await chat(handle, f"[[call read_reference {json.dumps(read)}]] [[say read]]")
    last = (await store.messages(handle.id))[-2]
    assert last.name == "read_reference" and not last.is_error
    assert last.content.startswith("x" * 10 + "\n[characters 999,990 to 1,000,000 of 1,000,000")


async def test_old_messages_are_summarised_now_and_then_not_every_turn(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation({"provider": "echo"}, buffer_messages=8, vector={"enabled": False})
    turns = 12
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        for turn in range(turns):
            assert (await chat(handle, f"message {turn}")).status == "completed"
        history = await handle.workflow.fetch_history()

    summaries = [
        e
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "keel.memory.summarize"
    ]
    assert 1 <= len(summaries) <= turns // 2
    summary = await store.latest_summary(handle.id)
    # The model's window (8 messages) starts at seq 16 on the last turn; the summary reaches it.
    assert summary is not None and summary.upto_seq >= 2 * turns - 8


async def test_history_per_turn_stays_flat_with_memory_on(
    client: Client, settings: Settings, store: TranscriptStore, vector_memory: VectorMemory
) -> None:
    formation = _formation({"provider": "echo"}, buffer_messages=10)
    scope = MemoryScope(tenant="test", user_id="hal", formation="default")
    await vector_memory.write(
        scope,
        [
            NewMemory(
                id=memory_id("keel/test/earlier", "t", i),
                kind="exchange",
                text=f"User: fact number {i} " + "y" * 400,
                session="keel/test/earlier",
                turn_id="t",
            )
            for i in range(20)
        ],
    )
    async with running_workers(client, settings, formation, store, vector_memory=vector_memory):
        handle = await start_session(client, settings, formation, user_id="hal")
        sizes = [await _history_bytes(handle)]
        for turn in range(30):
            assert (await chat(handle, f"turn {turn} " + "x" * 1000)).status == "completed"
            sizes.append(await _history_bytes(handle))

    added = [after - before for before, after in pairwise(sizes)]
    # Recall (bounded), summaries every few turns and the memory write add the same each turn.
    assert max(added[20:]) <= 1.3 * max(added[2:10]), added
