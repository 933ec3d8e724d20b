"""The LLM activity's usage: the provider's counts, else Keel's estimate; priced; in the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.llm import LlmActivities
from keel.contracts.llm import CallModelInput, CallModelResult
from keel.contracts.memory import MemoryScope
from keel.deltas import InProcessDeltaBus
from keel.formation import ModelConfig, ModelPricing
from keel.messages import Message, Usage
from keel.store import SqliteTranscriptStore, UsageQuery
from tests.fakes.llm_server import FakeLLMServer

PRICING = ModelPricing(input_per_mtok=3.0, output_per_mtok=15.0)
QUESTION = "What is the capital of France? Answer in one short sentence, please."
ANSWER = "The capital of France is Paris, a city on the Seine."


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    shared_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return shared_server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteTranscriptStore]:
    store = SqliteTranscriptStore(tmp_path / "keel.db")
    yield store
    await store.close()


def _input(
    server: FakeLLMServer, *, session: str = "keel/t/s1", turn: str = "t1"
) -> CallModelInput:
    model = ModelConfig(
        provider="openai", model="fake-model", base_url=server.openai_base_url, pricing=PRICING
    )
    question = Message(
        seq=0, role="user", content=QUESTION, turn_id=turn, created_at=datetime.now(UTC)
    )
    return CallModelInput(
        session=session,
        turn_id=turn,
        step=1,
        upto_seq=0,
        new_messages=[question],
        model=model,
        system_prompt="You answer geography questions.",
        owner=MemoryScope(tenant="t", user_id="ada", formation="f"),
        agent="geographer",
    )


async def _call(store: SqliteTranscriptStore, input: CallModelInput) -> CallModelResult:
    activities = LlmActivities(store, deltas=InProcessDeltaBus())
    return await ActivityEnvironment().run(activities.call_model, input)


async def test_a_streamed_answer_without_usage_is_estimated_not_zero(
    server: FakeLLMServer, store: SqliteTranscriptStore
) -> None:
    server.stream_usage = False
    server.enqueue_reply(ANSWER)

    result = await _call(store, _input(server))

    usage = result.usage
    assert usage.estimated
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    # System prompt and question (~100 characters with 2 messages' overhead), the answer.
    assert 25 <= usage.prompt_tokens <= 45 and 10 <= usage.completion_tokens <= 20
    expected = (usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected)
    assert result.message.usage == usage
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}


async def test_the_providers_counts_are_kept_and_priced(
    server: FakeLLMServer, store: SqliteTranscriptStore
) -> None:
    server.enqueue_reply(ANSWER, prompt_tokens=1000, completion_tokens=100)

    usage = (await _call(store, _input(server))).usage

    assert usage == Usage(
        prompt_tokens=1000, completion_tokens=100, cost_usd=0.0045, estimated=False
    )


async def test_each_call_has_one_ledger_row_counted_for_the_delegating_turn(
    server: FakeLLMServer, store: SqliteTranscriptStore
) -> None:
    server.enqueue_reply(ANSWER, prompt_tokens=10, completion_tokens=2)
    server.enqueue_reply(ANSWER, prompt_tokens=10, completion_tokens=2)  # the retry's
    server.enqueue_reply(ANSWER, prompt_tokens=20, completion_tokens=4)
    await _call(store, _input(server))
    await _call(store, _input(server))  # a retried attempt rewrites its row
    await _call(store, _input(server, session="keel/t/s1/t1/1/call_1", turn="c1"))

    [total] = await store.usage_totals(UsageQuery(tenant="t", group_by="session"))
    assert (total.key, total.turns) == ("keel/t/s1", 1)
    assert (total.prompt_tokens, total.completion_tokens) == (30, 6)
    assert total.cost_usd == pytest.approx((30 * 3.0 + 6 * 15.0) / 1e6)
    [by_agent] = await store.usage_totals(UsageQuery(tenant="t", group_by="agent"))
    assert by_agent.key == "geographer"
