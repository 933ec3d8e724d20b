"""Provider resilience in sessions: fallbacks, circuit breakers, the response cache.

Every failure is induced at the outer edge, against real client libraries: a fake
vendor answering 5xx, one answering past the model's timeout, and a port nothing
listens on. Each provider's requests are counted.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from keel.deltas import InProcessDeltaBus
from keel.events import EVENTS_TOPIC, SessionEvent
from keel.formation import Formation, formation_from_data
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.procs import free_port
from tests.workflows.helpers import chat, start_session

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TURNS = 6
"""Turns of the breaker tests: enough for the open circuit to show in the counts."""


@pytest.fixture
async def servers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeLLMServer, ...]]:
    """Two fake vendors: the primary model's (made to fail) and its fallback's."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-resilience")
    async with FakeLLMServer() as primary, FakeLLMServer() as backup:
        yield primary, backup


def _model(base_url: str, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": model,
        "base_url": base_url,
        "api_key_env": "FAKE_LLM_KEY",
        **extra,
    }


def _formation(
    primary: dict[str, Any], backup: FakeLLMServer | None = None, **backup_model: Any
) -> Formation:
    models = {"default": primary}
    if backup is not None:
        models["default"] = {**primary, "fallbacks": ["backup"]}
        models["backup"] = _model(backup.openai_base_url, "backup-model", **backup_model)
    return formation_from_data(
        {
            "models": models,
            # A prompt of its own per test: cached answers of other runs never match.
            "agents": [{"name": "assistant", "system_prompt": f"Test {uuid.uuid4().hex}."}],
        },
        env={},
    )


async def _completed_events(client: Client, handle: SessionHandle, turns: int) -> list[Any]:
    """The data of the session's first `turns` `turn.completed` events."""
    stream = WorkflowStreamClient.create(client, handle.id)
    found: list[Any] = []
    async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
        if item.data.type == "turn.completed":
            found.append(item.data.data)
            if len(found) == turns:
                break
    return found


@pytest.mark.parametrize("failure", ["5xx", "timeout", "refused"])
async def test_a_failing_model_falls_back_and_the_turn_names_the_model_that_answered(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
    failure: str,
) -> None:
    primary, backup = servers
    base_url = primary.openai_base_url
    extra: dict[str, Any] = {"max_attempts": 2}
    if failure == "5xx":
        primary.failing_status = 503
    elif failure == "timeout":
        primary.reply_delay_s = 3
        extra = {"max_attempts": 1, "timeout_s": 1}
    else:
        base_url = f"http://127.0.0.1:{free_port()}/v1"
    formation = _formation(_model(base_url, "primary-model", **extra), backup)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, "hello")
        [completed] = await _completed_events(client, handle, 1)
    assert result.status == "completed", result.error
    assert result.message is not None and result.message.content == "fake: hello"
    assert result.model == completed["model"] == "backup"
    assert backup.requests_for("backup-model") == 1
    expected = {"5xx": 2, "timeout": 1, "refused": 0}[failure]
    assert primary.requests_for("primary-model") == expected


async def test_when_every_model_fails_the_turn_fails_and_the_session_goes_on(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
) -> None:
    primary, backup = servers
    primary.failing_status = backup.failing_status = 500
    primary_model = _model(primary.openai_base_url, "primary-model", max_attempts=1)
    formation = _formation(primary_model, backup, max_attempts=1)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        failed = await chat(handle, "hello")
        primary.failing_status = backup.failing_status = None
        after = await chat(handle, "again")
    assert failed.status == "failed" and failed.error and "500" in failed.error
    assert (primary.requests_for("primary-model"), backup.requests_for("backup-model")) == (2, 1)
    assert after.status == "completed" and after.model == "default"


async def _failing_turns(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
    breaker: dict[str, Any] | None,
) -> int:
    """Run `TURNS` turns with the primary vendor down; the requests it received."""
    primary, backup = servers
    primary.failing_status = 502
    extra: dict[str, Any] = {"max_attempts": 2}
    if breaker is not None:
        extra["circuit_breaker"] = breaker
    formation = _formation(_model(primary.openai_base_url, "primary-model", **extra), backup)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        for n in range(TURNS):
            result = await chat(handle, f"turn {n}")
            assert result.status == "completed" and result.model == "backup", result.error
    assert backup.requests_for("backup-model") == TURNS
    return primary.requests_for("primary-model")


async def test_an_open_circuit_keeps_requests_off_the_failing_provider(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
) -> None:
    breaker = {"failures": 2, "window_s": 60, "open_s": 60}
    with_breaker = await _failing_turns(client, settings, store, servers, breaker)
    for server in servers:
        server.reset()
    without = await _failing_turns(client, settings, store, servers, None)
    print(f"\nrequests to the failing provider over {TURNS} turns:", end=" ")
    print(f"with the breaker {with_breaker}, without {without}")
    # Two failed attempts open the circuit; from then on each turn goes to the fallback at once.
    assert with_breaker == 2
    assert without == 2 * TURNS


async def test_after_open_s_one_probe_closes_the_circuit_again(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
) -> None:
    primary, backup = servers
    primary.failing_status = 503
    breaker = {"failures": 1, "window_s": 60, "open_s": 2}
    extra = {"max_attempts": 1, "circuit_breaker": breaker}
    model = _model(primary.openai_base_url, "primary-model", **extra)
    formation = _formation(model, backup)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        models = [(await chat(handle, "one")).model, (await chat(handle, "two")).model]
        assert primary.requests_for("primary-model") == 1, "the circuit opened at once"
        primary.failing_status = None
        await asyncio.sleep(2.5)
        models += [(await chat(handle, "three")).model, (await chat(handle, "four")).model]
    assert models == ["backup", "backup", "default", "default"]
    assert primary.requests_for("primary-model") == 3


@pytest.mark.parametrize("where", ["store", "redis"])
async def test_identical_requests_at_temperature_0_are_answered_from_the_cache(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
    where: str,
) -> None:
    primary, _ = servers
    primary.token_delay_s = 0.01  # a model that takes a while, as real ones do
    primary.enqueue_reply("a cached answer, word by word, from the model")
    if where == "redis":
        settings = settings.model_copy(update={"redis_url": REDIS_URL})
    model = _model(primary.openai_base_url, "primary-model", temperature=0, cache_ttl_s=60)
    formation = _formation(model)
    async with running_workers(client, settings, formation, store):
        first, second = [await start_session(client, settings, formation) for _ in range(2)]
        started = time.perf_counter()
        miss = await chat(first, "hello")
        miss_s = time.perf_counter() - started
        started = time.perf_counter()
        hit = await chat(second, "hello")
        hit_s = time.perf_counter() - started
        other = await chat(second, "something else")
    print(f"\n{where} cache: one turn, miss {miss_s * 1000:.0f} ms, hit {hit_s * 1000:.0f} ms")
    assert miss.message is not None and hit.message is not None
    assert hit.message.content == miss.message.content
    assert hit.model == "default" and hit.usage.prompt_tokens == 0, "a hit spends no tokens"
    assert other.message is not None and other.message.content == "fake: something else"
    # One request for the two identical ones, one for the different one.
    assert primary.requests_for("primary-model") == 2
    stored = [m.content for m in await store.messages(second.id)]
    assert stored[:2] == ["hello", hit.message.content]


async def test_a_cached_answer_streams_as_any_answer_does(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    servers: tuple[FakeLLMServer, FakeLLMServer],
) -> None:
    primary, _ = servers
    model = _model(primary.openai_base_url, "primary-model", temperature=0, cache_ttl_s=60)
    formation = _formation(model)
    bus = InProcessDeltaBus()
    async with running_workers(client, settings, formation, store, deltas=bus):
        first, second = [await start_session(client, settings, formation) for _ in range(2)]
        await chat(first, "hello")
        async with bus.subscribe(second.id) as deltas:
            hit = await chat(second, "hello")
            text = ""
            async for delta in deltas:
                text += delta.event.data["text"]
                if text == "fake: hello":
                    break
        [completed] = await _completed_events(client, second, 1)
    assert hit.message is not None and hit.message.content == text == "fake: hello"
    assert completed["model"] == "default"
    assert primary.requests_for("primary-model") == 1
