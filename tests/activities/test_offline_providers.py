"""The `echo` and `scripted` providers, and the helpers the HTTP providers share."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from temporalio.exceptions import ApplicationError

from activities.providers import ModelRequest, ModelResponse, get_provider
from activities.providers._errors import (
    map_sdk_error,
    parse_retry_after,
    short_vendor_message,
    status_error,
)
from activities.providers._wire import WireNames, parse_arguments
from keel.formation import ModelConfig
from keel.messages import Message

ECHO = ModelConfig(provider="echo")
SCRIPTED = ModelConfig(provider="scripted")


def msg(seq: int, role: str, content: str = "", **fields: Any) -> Message:
    return Message(
        seq=seq, role=role, content=content, turn_id="t1", created_at=datetime.now(UTC), **fields
    )


async def complete(
    cfg: ModelConfig, messages: list[Message], *, attempt: int = 1, stream: bool = False
) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    request = ModelRequest(model=cfg, messages=messages, attempt=attempt)
    response = await get_provider(cfg).complete(request, on_delta=on_delta if stream else None)
    return response, deltas


async def test_echo_answers_the_last_user_message() -> None:
    messages = [msg(0, "user", "first"), msg(1, "assistant", "ok"), msg(2, "user", "second one")]

    response, deltas = await complete(ECHO, messages)

    assert response.content == "echo: second one"
    assert response.tool_calls == []
    assert deltas == []
    prompt = len("first" + "ok" + "second one") // 4
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (
        max(1, prompt),
        len("echo: second one") // 4,
    )


async def test_echo_streams_word_pieces_that_join_exactly() -> None:
    text = "  spaced   out\ttext\nhere "

    response, deltas = await complete(ECHO, [msg(0, "user", text)], stream=True)

    assert response.content == "echo: " + text
    assert "".join(deltas) == response.content
    assert len(deltas) >= 4


async def test_scripted_without_directives_echoes() -> None:
    response, _ = await complete(SCRIPTED, [msg(0, "user", "just text")])

    assert response.content == "echo: just text"


async def test_scripted_calls_then_summarises_results() -> None:
    user = msg(0, "user", 'go [[call time.now]] [[call math.add {"a": 1, "b": [[2]]}]]')

    first, deltas = await complete(SCRIPTED, [user], stream=True)

    assert first.content == ""
    assert deltas == []
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_1", "time.now", {}),
        ("call_2", "math.add", {"a": 1, "b": [[2]]}),
    ]
    transcript = [
        user,
        msg(1, "assistant", "", tool_calls=first.tool_calls),
        msg(2, "tool", "noon", tool_call_id="call_1", name="time.now"),
        msg(3, "tool", "3", tool_call_id="call_2", name="math.add"),
    ]

    final, deltas = await complete(SCRIPTED, transcript, stream=True)

    assert final.tool_calls == []
    assert final.content == "tool results: time.now -> noon; math.add -> 3"
    assert "".join(deltas) == final.content


async def test_scripted_say_is_the_final_answer() -> None:
    user = msg(0, "user", "[[call t.x]] [[say All done, thanks.]]")
    first, _ = await complete(SCRIPTED, [user])
    transcript = [
        user,
        msg(1, "assistant", "", tool_calls=first.tool_calls),
        msg(2, "tool", "r", tool_call_id="call_1", name="t.x"),
    ]

    final, _ = await complete(SCRIPTED, transcript)
    alone, _ = await complete(SCRIPTED, [msg(0, "user", "hi [[say Hello!]]")])

    assert final.content == "All done, thanks."
    assert alone.content == "Hello!"


async def test_scripted_json_is_the_final_answer_even_with_brackets_inside() -> None:
    text = 'plan [[json {"steps": [{"description": "go [[say A]]", "depends_on": []}]}]] now'
    response, _ = await complete(SCRIPTED, [msg(0, "user", text)])

    assert json.loads(response.content) == {
        "steps": [{"description": "go [[say A]]", "depends_on": []}]
    }


async def test_scripted_reads_only_the_last_user_message() -> None:
    messages = [msg(0, "user", "[[call t.x]]"), msg(1, "assistant", "?"), msg(2, "user", "plain")]

    response, _ = await complete(SCRIPTED, messages)

    assert response.content == "echo: plain"


async def test_scripted_fail_times_then_succeeds() -> None:
    messages = [msg(0, "user", "[[fail 503 times=2]] [[say finally]]")]

    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as caught:
            await complete(SCRIPTED, messages, attempt=attempt)
        assert caught.value.type == "ProviderServerError"
        assert caught.value.non_retryable is False
    response, _ = await complete(SCRIPTED, messages, attempt=3)

    assert response.content == "finally"


async def test_scripted_fail_without_times_fails_always() -> None:
    with pytest.raises(ApplicationError) as caught:
        await complete(SCRIPTED, [msg(0, "user", "[[fail 400]]")], attempt=9)

    assert caught.value.type == "ProviderBadRequest"
    assert caught.value.non_retryable is True


async def test_scripted_sleep() -> None:
    started = time.monotonic()

    response, _ = await complete(SCRIPTED, [msg(0, "user", "wait [[sleep 0.05]] for me")])

    assert time.monotonic() - started >= 0.05
    assert response.content == "echo: wait  for me"


@pytest.mark.parametrize(
    "text",
    [
        "[[call]]",
        "[[call t.x {bad json}]]",
        "[[call t.x [1]]]",
        "[[sleep soon]]",
        "[[fail x]]",
        "[[json {bad]]",
        "[[json {} tail]]",
    ],
)
async def test_scripted_bad_directive_is_a_non_retryable_error(text: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        await complete(SCRIPTED, [msg(0, "user", text)])

    assert caught.value.type == "ScriptError"
    assert caught.value.non_retryable is True


def test_get_provider_needs_a_model_for_http_vendors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")

    with pytest.raises(ApplicationError) as caught:
        # The formation schema already demands `model`; the provider checks again.
        get_provider(ModelConfig.model_construct(provider="openai", model=None))

    assert caught.value.type == "MissingModel"


def test_wire_names_are_safe_and_reversible() -> None:
    long_name = "server." + "x" * 80
    names = WireNames(["time.get_current_time", "a.b", "a__b", "we!rd name", long_name])

    wires = {n: names.to_wire(n) for n in names._to_wire}

    assert wires["time.get_current_time"] == "time__get_current_time"
    assert wires["a__b"] == "a__b"  # already safe: keeps its spelling
    assert wires["a.b"] != "a__b"
    assert len(set(wires.values())) == len(wires)
    for name, wire in wires.items():
        assert len(wire) <= 64
        assert all(c.isalnum() or c in "_-" for c in wire)
        assert names.from_wire(wire) == name
    assert names.from_wire("unknown") == "unknown"
    assert WireNames(["a.b", "a__b"]).to_wire("a.b") == wires["a.b"]  # stable per request


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {}
    assert parse_arguments("[1, 2]") == {"_raw": "[1, 2]"}
    assert parse_arguments("{oops") == {"_raw": "{oops"}


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == timedelta(seconds=2)
    assert parse_retry_after({"retry-after-ms": "1500"}) == timedelta(seconds=1.5)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    delay = parse_retry_after({"Retry-After": future})
    assert delay is not None and timedelta(seconds=25) < delay <= timedelta(seconds=30)
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": past}) == timedelta(0)


@pytest.mark.parametrize(
    ("status", "retryable"), [(408, True), (409, True), (429, True), (500, True), (404, False)]
)
def test_status_retryability(status: int, retryable: bool) -> None:
    error = status_error("X", status, "m", {"retry-after": "3"})

    assert error.non_retryable is not retryable
    assert error.next_retry_delay == (timedelta(seconds=3) if retryable else None)


def test_short_vendor_message() -> None:
    assert short_vendor_message({"message": "bad", "type": "x"}) == "bad"
    assert short_vendor_message({"type": "error", "error": {"message": "slow down"}}) == "slow down"
    assert short_vendor_message(None, "fallback") == "fallback"
    assert len(short_vendor_message("y" * 1000)) <= 301


def test_sdk_errors_without_a_status_are_retryable() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
    overloaded = anthropic.APIStatusError(
        "overloaded",
        response=httpx2.Response(200, request=request),
        body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    cases = [
        (openai, openai.APITimeoutError(request=request), "ProviderTimeout"),
        (anthropic, overloaded, "ProviderStreamError"),
        (openai, httpx2.ReadError("connection reset"), "ProviderConnectionError"),
        (anthropic, httpx2.ReadTimeout("slow"), "ProviderTimeout"),
    ]
    for sdk, error, expected in cases:
        mapped = map_sdk_error("V", sdk, error)
        assert mapped is not None
        assert (mapped.type, mapped.non_retryable) == (expected, False)
    assert "Overloaded" in str(map_sdk_error("V", anthropic, overloaded))
    assert map_sdk_error("V", openai, ValueError("not ours")) is None
