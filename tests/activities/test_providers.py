"""The OpenAI and Anthropic providers, through the real SDKs, against the fake LLM server."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.providers import ModelRequest, ModelResponse, ToolSpec, get_provider
from keel.formation import ModelConfig
from keel.messages import Message, ToolCall
from tests.fakes.llm_server import FakeLLMServer

API_KEY = "sk-test-secret-value-0123456789"
VENDORS = ["openai", "anthropic"]
CLOCK = ToolSpec(
    name="time.get_current_time",
    description="The current time.",
    parameters={"type": "object", "properties": {"tz": {"type": "string"}}},
)


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    shared_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return shared_server


def config(server: FakeLLMServer, vendor: str, **options: Any) -> ModelConfig:
    base = server.openai_base_url if vendor == "openai" else server.anthropic_base_url
    return ModelConfig(provider=vendor, model="fake-model", base_url=base, **options)


def msg(seq: int, role: str, content: str = "", **fields: Any) -> Message:
    return Message(
        seq=seq, role=role, content=content, turn_id="t1", created_at=datetime.now(UTC), **fields
    )


async def call(
    cfg: ModelConfig,
    messages: list[Message],
    *,
    stream: bool = False,
    tools: list[ToolSpec] | None = None,
    system: str | None = None,
) -> tuple[ModelResponse, list[str]]:
    """Complete through `get_provider`; returns the response and the streamed deltas."""
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    request = ModelRequest(model=cfg, system_prompt=system, messages=messages, tools=tools or [])
    response = await get_provider(cfg).complete(request, on_delta=on_delta if stream else None)
    return response, deltas


@pytest.mark.parametrize("vendor", VENDORS)
async def test_plain_answer(server: FakeLLMServer, vendor: str) -> None:
    server.enqueue_reply("Hello there, friend.")

    response, _ = await call(config(server, vendor), [msg(0, "user", "hi")], system="Be brief.")

    assert response.content == "Hello there, friend."
    assert response.tool_calls == []
    assert response.stop_reason == ("stop" if vendor == "openai" else "end_turn")
    body = server.requests[0].body
    if vendor == "openai":
        assert server.requests[0].path == "/v1/chat/completions"
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
        assert "stream" not in body
    else:
        assert server.requests[0].path == "/v1/messages"
        assert body["system"] == "Be brief."
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        assert body["max_tokens"] == 4096


@pytest.mark.parametrize("vendor", VENDORS)
async def test_default_reply_echoes_last_user_text(server: FakeLLMServer, vendor: str) -> None:
    response, _ = await call(config(server, vendor), [msg(0, "user", "ping")])

    assert response.content == "fake: ping"


@pytest.mark.parametrize("vendor", VENDORS)
async def test_streamed_answer(server: FakeLLMServer, vendor: str) -> None:
    server.enqueue_reply("one two three four")

    response, deltas = await call(config(server, vendor), [msg(0, "user", "count")], stream=True)

    assert response.content == "one two three four"
    assert len(deltas) >= 2
    assert "".join(deltas) == response.content
    body = server.requests[0].body
    assert body["stream"] is True
    if vendor == "openai":
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_usage(server: FakeLLMServer, vendor: str, stream: bool) -> None:
    server.enqueue_reply("a b c", prompt_tokens=11, completion_tokens=7)

    response, _ = await call(config(server, vendor), [msg(0, "user", "go")], stream=stream)

    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 7)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_settings_are_passed(server: FakeLLMServer, vendor: str) -> None:
    cfg = config(server, vendor, temperature=0.25, max_tokens=123)

    await call(cfg, [msg(0, "user", "go")])

    body = server.requests[0].body
    assert body["max_tokens"] == 123
    if vendor == "openai":
        assert body["temperature"] == 0.25
    else:
        # API version 2026-10-21 rejects sampling parameters.
        assert "temperature" not in body


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_tool_call_round_trip(server: FakeLLMServer, vendor: str, stream: bool) -> None:
    cfg = config(server, vendor)
    user = msg(0, "user", "what time is it?")
    server.enqueue_reply(
        tool_calls=[{"id": "c1", "name": "time__get_current_time", "arguments": {"tz": "UTC"}}]
    )

    first, _ = await call(cfg, [user], tools=[CLOCK], stream=stream)

    assert first.tool_calls == [
        ToolCall(id="c1", name="time.get_current_time", arguments={"tz": "UTC"})
    ]
    assert first.stop_reason == ("tool_calls" if vendor == "openai" else "tool_use")
    wire_tool = server.requests[0].body["tools"][0]
    if vendor == "openai":
        assert wire_tool["type"] == "function"
        assert wire_tool["function"]["name"] == "time__get_current_time"
        assert wire_tool["function"]["parameters"] == CLOCK.parameters
    else:
        assert wire_tool["name"] == "time__get_current_time"
        assert wire_tool["input_schema"] == CLOCK.parameters

    server.enqueue_reply("It is noon.")
    transcript = [
        user,
        msg(1, "assistant", "", tool_calls=first.tool_calls),
        msg(2, "tool", "12:00", tool_call_id="c1", name="time.get_current_time"),
    ]
    final, _ = await call(cfg, transcript, tools=[CLOCK], stream=stream)

    assert final.content == "It is noon."
    sent = server.requests[1].body["messages"]
    if vendor == "openai":
        assert sent[1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "time__get_current_time", "arguments": '{"tz": "UTC"}'},
                }
            ],
        }
        assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "12:00"}
    else:
        assert sent[1] == {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "c1",
                    "name": "time__get_current_time",
                    "input": {"tz": "UTC"},
                }
            ],
        }
        assert sent[2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "12:00"}],
        }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_text_and_parallel_tool_calls(
    server: FakeLLMServer, vendor: str, stream: bool
) -> None:
    other = ToolSpec(name="calendar.today")
    server.enqueue_reply(
        "Let me check.",
        tool_calls=[
            {"id": "c1", "name": "time__get_current_time", "arguments": {"tz": "CET"}},
            {"id": "c2", "name": "calendar__today", "arguments": {}},
        ],
    )

    response, deltas = await call(
        config(server, vendor), [msg(0, "user", "when?")], tools=[CLOCK, other], stream=stream
    )

    assert response.content == "Let me check."
    assert "".join(deltas) == (response.content if stream else "")
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("c1", "time.get_current_time", {"tz": "CET"}),
        ("c2", "calendar.today", {}),
    ]


async def test_anthropic_merges_tool_results_and_flags_errors(server: FakeLLMServer) -> None:
    calls = [ToolCall(id="a", name="x.one"), ToolCall(id="b", name="x.two")]
    transcript = [
        msg(0, "user", "do both"),
        msg(1, "assistant", "On it.", tool_calls=calls),
        msg(2, "tool", "ok", tool_call_id="a", name="x.one"),
        msg(3, "tool", "boom", tool_call_id="b", name="x.two", is_error=True),
    ]

    await call(config(server, "anthropic"), transcript)

    sent = server.requests[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert [b["name"] for b in sent[1]["content"][1:]] == ["x__one", "x__two"]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "ok"},
        {"type": "tool_result", "tool_use_id": "b", "content": "boom", "is_error": True},
    ]


async def test_openai_marks_failed_tool_results_in_text(server: FakeLLMServer) -> None:
    transcript = [
        msg(0, "user", "go"),
        msg(1, "assistant", "", tool_calls=[ToolCall(id="a", name="x.one")]),
        msg(2, "tool", "boom", tool_call_id="a", name="x.one", is_error=True),
    ]

    await call(config(server, "openai"), transcript)

    assert server.requests[0].body["messages"][2]["content"] == "Error: boom"


@pytest.mark.parametrize(
    ("vendor", "stream"), [("openai", False), ("openai", True), ("anthropic", True)]
)
async def test_malformed_tool_arguments_are_kept_raw(
    server: FakeLLMServer, vendor: str, stream: bool
) -> None:
    server.enqueue_reply(tool_calls=[{"name": "time__get_current_time", "arguments": "{not json"}])

    response, _ = await call(
        config(server, vendor), [msg(0, "user", "t?")], tools=[CLOCK], stream=stream
    )

    assert response.tool_calls[0].name == "time.get_current_time"
    assert response.tool_calls[0].arguments == {"_raw": "{not json"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (429, "RateLimited", True),
        (503, "ProviderServerError", True),
        (400, "ProviderBadRequest", False),
        (401, "ProviderAuthError", False),
    ],
)
@pytest.mark.parametrize("vendor", VENDORS)
async def test_error_mapping(
    server: FakeLLMServer, vendor: str, status: int, error_type: str, retryable: bool, stream: bool
) -> None:
    message = f"the vendor says no to {API_KEY}"
    server.enqueue_error(status, message, retry_after=2 if status == 429 else None)

    with pytest.raises(ApplicationError) as caught:
        await call(config(server, vendor), [msg(0, "user", "hi")], stream=stream)

    error = caught.value
    assert error.type == error_type
    assert error.non_retryable is not retryable
    assert str(status) in error.message and "the vendor says no" in error.message
    assert API_KEY not in error.message and "authorization" not in error.message.lower()
    assert error.__cause__ is not None
    expected_delay = timedelta(seconds=2) if status == 429 else None
    assert error.next_retry_delay == expected_delay


@pytest.mark.parametrize("vendor", VENDORS)
async def test_connection_refused_is_retryable(
    server: FakeLLMServer, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on `port` any more.
    base = f"http://127.0.0.1:{port}" + ("/v1" if vendor == "openai" else "")
    cfg = ModelConfig(provider=vendor, model="m", base_url=base, timeout_s=5)

    with pytest.raises(ApplicationError) as caught:
        await call(cfg, [msg(0, "user", "hi")])

    assert caught.value.type == "ProviderConnectionError"
    assert caught.value.non_retryable is False


@pytest.mark.parametrize("vendor", VENDORS)
def test_missing_api_key(
    server: FakeLLMServer, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_TEST_ABSENT_KEY", raising=False)
    cfg = config(server, vendor, api_key_env="KEEL_TEST_ABSENT_KEY")

    with pytest.raises(ApplicationError) as caught:
        get_provider(cfg)

    assert caught.value.type == "MissingApiKey"
    assert caught.value.non_retryable is True
    assert "KEEL_TEST_ABSENT_KEY" in caught.value.message


@pytest.mark.parametrize("vendor", VENDORS)
def test_default_key_variable(
    server: FakeLLMServer, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = "OPENAI_API_KEY" if vendor == "openai" else "ANTHROPIC_API_KEY"
    monkeypatch.delenv(variable)

    with pytest.raises(ApplicationError, match=variable):
        get_provider(config(server, vendor))


@pytest.mark.parametrize("vendor", VENDORS)
async def test_clients_are_shared_and_do_not_retry(server: FakeLLMServer, vendor: str) -> None:
    cfg = config(server, vendor, timeout_s=42)

    first = get_provider(cfg)._client()  # type: ignore[attr-defined]
    second = get_provider(cfg)._client()  # type: ignore[attr-defined]
    other = get_provider(config(server, vendor, timeout_s=7))._client()  # type: ignore[attr-defined]

    assert first is second
    assert other is not first
    assert first.max_retries == 0
    assert first.timeout == 42


async def test_unknown_tool_name_is_returned_unchanged(server: FakeLLMServer) -> None:
    server.enqueue_reply(tool_calls=[{"name": "made_up", "arguments": json.dumps({"a": 1})}])

    response, _ = await call(config(server, "openai"), [msg(0, "user", "x")], tools=[CLOCK])

    assert response.tool_calls[0].name == "made_up"
    assert response.tool_calls[0].arguments == {"a": 1}
