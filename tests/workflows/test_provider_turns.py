"""Turns through real provider client libraries against a local fake vendor server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.workflows.helpers import chat, start_session

SECRET = "sk-test-provider-turns-0123456789"


@pytest.fixture
async def fake_llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLMServer]:
    monkeypatch.setenv("FAKE_LLM_KEY", SECRET)
    async with FakeLLMServer() as server:
        yield server


def _formation(
    provider: str, server: FakeLLMServer, *, tools: list[str] | None = None, **model: Any
) -> Formation:
    base_url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    return formation_from_data(
        {
            "models": {
                "default": {
                    "provider": provider,
                    "model": "fake-model",
                    "base_url": base_url,
                    "api_key_env": "FAKE_LLM_KEY",
                    **model,
                }
            },
            "agents": [{"name": "assistant", "system_prompt": "Be brief.", "tools": tools or []}],
            "python_tools": ["tests.fakes.python_tools"] if tools else [],
        },
        env={},
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_turn_through_the_vendor_client(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    fake_llm: FakeLLMServer,
    provider: str,
) -> None:
    formation = _formation(provider, fake_llm)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        first = await chat(handle, "hello")
        second = await chat(handle, "again")
    assert first.message is not None and first.message.content == "fake: hello"
    assert second.message is not None and second.message.content == "fake: again"
    # The second call carried the whole conversation, loaded from the store.
    last = fake_llm.requests[-1]
    assert last.headers.get("authorization") == f"Bearer {SECRET}" or (
        last.headers.get("x-api-key") == SECRET
    )
    sent = [m for m in last.body["messages"] if m["role"] in ("user", "assistant")]
    assert len(sent) == 3


async def test_a_retryable_vendor_error_is_retried_and_the_turn_completes(
    client: Client, settings: Settings, store: TranscriptStore, fake_llm: FakeLLMServer
) -> None:
    formation = _formation("openai", fake_llm)
    fake_llm.enqueue_error(503, "overloaded")
    fake_llm.enqueue_error(429, "slow down", retry_after=0.1)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, "hello")
    assert result.status == "completed"
    assert len(fake_llm.requests) == 3


async def test_a_rejected_request_fails_the_turn_not_the_session(
    client: Client, settings: Settings, store: TranscriptStore, fake_llm: FakeLLMServer
) -> None:
    formation = _formation("openai", fake_llm)
    fake_llm.enqueue_error(400, "context too long")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        failed = await chat(handle, "too much")
        after = await chat(handle, "smaller")
    assert failed.status == "failed" and failed.error and "400" in failed.error
    assert len(fake_llm.requests) == 1 + 1, "a 400 is not retried"
    assert after.status == "completed"
    # The failed turn's message still reached the store, with the next turn's.
    assert [m.content for m in await store.messages(handle.id)] == [
        "too much",
        "smaller",
        "fake: smaller",
    ]


async def test_a_missing_key_fails_the_turn_naming_the_variable(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FAKE_LLM_KEY")
    formation = _formation("openai", fake_llm)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        failed = await chat(handle, "hello")
    assert failed.status == "failed" and failed.error and "FAKE_LLM_KEY" in failed.error
    assert fake_llm.requests == []


async def test_call_ids_a_vendor_repeats_get_keys_of_their_own(
    client: Client, settings: Settings, store: TranscriptStore, fake_llm: FakeLLMServer
) -> None:
    formation = _formation("openai", fake_llm, tools=["whoami"])
    whoami = {"name": "whoami", "arguments": {}, "id": "call_0"}
    fake_llm.enqueue_reply(tool_calls=[whoami])  # step 1
    fake_llm.enqueue_reply(tool_calls=[whoami, whoami])  # step 2: the same id, twice
    fake_llm.enqueue_reply("done")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, "who are you?")
    assert result.message is not None and result.message.content == "done"
    messages = await store.messages(handle.id)
    calls = [[c.id for c in m.tool_calls] for m in messages if m.tool_calls]
    assert calls == [["call_0"], ["call_0", "call_2_1"]]
    keys = [json.loads(m.content)["key"].rsplit("/", 2)[-2:] for m in messages if m.role == "tool"]
    assert keys == [["1", "call_0"], ["2", "call_0"], ["2", "call_2_1"]]
