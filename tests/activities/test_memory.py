"""Memory activities, references and what the LLM activity adds to the model's context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio.testing import ActivityEnvironment

from activities._references import References, reference_id
from activities.llm import LlmActivities
from activities.memory import MemoryActivities
from activities.tools import ToolActivities
from keel.contracts.llm import CallModelInput
from keel.contracts.memory import MemoryDraft, ReadReferenceInput, WriteMemoriesInput
from keel.contracts.tools import CallToolInput
from keel.formation import ModelConfig
from keel.memory import MemoryScope, VectorMemory
from keel.messages import Message, Summary, ToolCall
from keel.store import TranscriptStore
from tests.fakes.llm_server import FakeLLMServer

SCOPE = MemoryScope(tenant="t", user_id="ann", formation="f")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_retried_write_creates_no_duplicate(
    store: TranscriptStore, vector_memory: VectorMemory
) -> None:
    activities = MemoryActivities(store, vector_memory)
    write = WriteMemoriesInput(
        scope=SCOPE,
        session="keel/t/s1",
        turn_id="turn-1",
        memories=[
            MemoryDraft(key="exchange", kind="exchange", text="User: hi\nAssistant: hello"),
            MemoryDraft(key="fact-0", kind="fact", text="Ann likes tea."),
        ],
    )
    env = ActivityEnvironment()
    first = await env.run(activities.write, write)
    retried = await env.run(activities.write, write)  # as Temporal would after a lost result

    assert retried.ids == first.ids and len(set(first.ids)) == 2
    listed, _ = await vector_memory.list(SCOPE)
    assert sorted(m.id for m in listed) == sorted(first.ids)


async def test_read_reference_reads_this_sessions_references_only(store: TranscriptStore) -> None:
    await store.put_reference("keel/t/s1", "ref_a", "0123456789" * 2000)
    activities = MemoryActivities(store, None)
    env = ActivityEnvironment()

    part = await env.run(
        activities.read_reference,
        ReadReferenceInput(session="keel/t/s1", ref="ref_a", offset=10, length=5),
    )
    assert part.content.startswith("01234\n[characters 10 to 15 of 20,000")
    assert "offset 15" in part.content and not part.is_error
    other = await env.run(
        activities.read_reference, ReadReferenceInput(session="keel/t/s2", ref="ref_a")
    )
    assert other.is_error


async def test_tool_results_over_the_threshold_become_references(store: TranscriptStore) -> None:
    tools = ToolActivities(references=References(store, threshold_bytes=1024))
    big = "é" * 600  # 600 characters, 1,200 UTF-8 bytes
    call = CallToolInput(session="keel/t/s1", turn_id="t1", call_id="c1", name="x")
    content, ref = await References(store, threshold_bytes=1024).keep_out_of_history(
        call.session, call.idempotency_key, big
    )
    assert ref == reference_id(call.idempotency_key) and content.startswith("é" * 500)
    assert await store.get_reference(call.session, ref) == big
    small = await ActivityEnvironment().run(tools.call_tool, call)
    assert small.ref is None and "no tool named" in small.content


@pytest.fixture
async def fake_llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    async with FakeLLMServer() as server:
        yield server


async def test_the_model_sees_summary_memories_and_referenced_content(
    store: TranscriptStore, fake_llm: FakeLLMServer
) -> None:
    session = "keel/t/s1"
    big = "line of a large result\n" * 10_000
    ref = "ref_big"
    await store.put_reference(session, ref, big)
    history = [
        Message(
            seq=i,
            role="user" if i % 2 == 0 else "assistant",
            content=f"m{i}",
            turn_id="a",
            created_at=NOW,
        )
        for i in range(10)
    ] + [
        Message(seq=10, role="user", content="look it up", turn_id="b", created_at=NOW),
        Message(
            seq=11,
            role="assistant",
            content="",
            turn_id="b",
            created_at=NOW,
            tool_calls=[ToolCall(id="c1", name="lookup")],
        ),
    ]
    await store.upsert(session, history)
    await store.save_summary(
        session, Summary(upto_seq=8, content="They spoke of m0 to m7.", created_at=NOW)
    )
    llm = LlmActivities(store, inline_max_chars=2000)
    result = await ActivityEnvironment().run(
        llm.call_model,
        CallModelInput(
            session=session,
            turn_id="b",
            step=2,
            upto_seq=12,
            new_messages=[
                Message(
                    seq=12,
                    role="tool",
                    content="glimpse",
                    turn_id="b",
                    created_at=NOW,
                    tool_call_id="c1",
                    name="lookup",
                    ref=ref,
                )
            ],
            model=ModelConfig(provider="openai", model="fake", base_url=fake_llm.openai_base_url),
            system_prompt="You help.",
            tools=["remember"],
            buffer_messages=4,
            owner=SCOPE,
            memories=["Ann likes tea."],
        ),
    )

    body = fake_llm.requests[-1].body
    system = body["messages"][0]["content"]
    assert system.startswith("You help.")
    assert "They spoke of m0 to m7." in system and "- Ann likes tea." in system
    tool_message = body["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"].startswith(big[:2000])
    assert "read_reference" in tool_message["content"] and len(tool_message["content"]) < 2300
    assert sorted(t["function"]["name"] for t in body["tools"]) == ["read_reference", "remember"]
    # The store keeps the glimpse, not the content; the first call did not register anyone.
    assert (await store.messages(session, after_seq=11))[0].content == "glimpse"
    assert result.message.seq == 13
    assert await store.user_sessions("t", "ann") == []
