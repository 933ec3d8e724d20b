"""The OpenAI-compatible facade, driven by OpenAI's own Python client against a served Keel.

One stack for the module: the API on a real port with a client key, its workers, and a
fake OpenAI server behind the `recorder` agent, which shows what the model was sent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from temporalio.testing import WorkflowEnvironment

from keel.deltas import InProcessDeltaBus
from keel.formation import formation_from_data
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.api.live import LiveApi, live_api
from tests.fakes.llm_server import FakeLLMServer

KEY = "openai-client-0123456789abcdef"
ANN = {"Authorization": f"Bearer {KEY}", "X-User-Id": "ann"}
MAX_BODY = 65_536
RECORDER_PROMPT = "You are Keel's recorder."


@dataclass
class Stack:
    api: LiveApi
    llm: FakeLLMServer
    url: str

    def client(self, user: str | None = "ann", key: str = KEY) -> AsyncOpenAI:
        """OpenAI's client for this Keel, acting for `user`."""
        headers = {"X-User-Id": user} if user else {}
        return AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key=key,
            default_headers=headers,
            max_retries=0,
        )


@pytest.fixture(scope="module")
async def stack(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    client = temporal_env.client
    tmp = tmp_path_factory.mktemp("openai")
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=tmp / "data",
        temporal_address=client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        max_sessions_per_user=0,
        rate_limit_per_minute=0,
        client_keys=KEY,
        max_body_bytes=MAX_BODY,
    )
    store = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KEEL_TEST_LLM_KEY", "k")
        async with FakeLLMServer() as llm:
            formation = formation_from_data(
                {
                    "models": {
                        "scripted": {"provider": "scripted"},
                        "fake": {
                            "provider": "openai",
                            "model": "fake",
                            "base_url": llm.openai_base_url,
                            "api_key_env": "KEEL_TEST_LLM_KEY",
                        },
                    },
                    "agents": [
                        {"name": "assistant", "model": "scripted", "tools": ["search", "lookup"]},
                        {"name": "recorder", "model": "fake", "system_prompt": RECORDER_PROMPT},
                    ],
                    "python_tools": ["tests.fakes.tools"],
                    "approvals": {"tools": {"lookup": "always"}},
                },
                env={},
            )
            deltas = InProcessDeltaBus()
            async with live_api(client, settings, formation, store, deltas=deltas) as api:
                yield Stack(api, llm, str(api.http.base_url).rstrip("/"))
    await store.close()


@pytest.fixture
def oa(stack: Stack) -> AsyncOpenAI:
    stack.llm.reset()
    return stack.client()


def _sent(llm: FakeLLMServer) -> list[tuple[str, str]]:
    """The (role, content) of the messages of the model's last request."""
    return [(m["role"], m["content"]) for m in llm.requests[-1].body["messages"]]


async def test_agents_are_listed_and_retrieved_as_models(oa: AsyncOpenAI) -> None:
    models = await oa.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [
        ("assistant", "model", "keel"),
        ("recorder", "model", "keel"),
    ]
    one = await oa.models.retrieve("recorder")
    assert (one.id, one.owned_by) == ("recorder", "keel")
    with pytest.raises(openai.NotFoundError) as missing:
        await oa.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"


async def test_a_completion_is_the_turns_answer_and_names_its_session(
    oa: AsyncOpenAI, stack: Stack
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-") and completion.model == "assistant"
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", "echo: hello there")
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    session = await stack.api.http.get(
        f"/v1/sessions/{raw.headers['x-keel-session-id']}", headers=ANN
    )
    turn_id = completion.id.removeprefix("chatcmpl-")
    assert [(m["role"], m["turn_id"]) for m in session.json()["messages"]] == [
        ("user", turn_id),
        ("assistant", turn_id),
    ]


async def test_a_streamed_completion_sends_the_answer_in_chunks_then_usage(
    oa: AsyncOpenAI,
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="assistant",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-keel-session-id"]
    chunks = [chunk async for chunk in raw.parse()]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    *answer, usage = chunks
    assert answer[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in answer]
    assert "".join(pieces) == "echo: one two three four"
    assert len([p for p in pieces if p]) > 1, "the deltas were not streamed"
    assert [c.choices[0].finish_reason for c in answer][-1] == "stop"
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens > 0


async def test_a_session_goes_on_with_the_keel_session_header(
    oa: AsyncOpenAI, stack: Stack
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="recorder", messages=[{"role": "user", "content": "My name is Ann."}]
    )
    session = raw.headers["x-keel-session-id"]
    in_session = oa.with_options(default_headers={"X-Keel-Session-Id": session})
    # Only the last message counts: the session's transcript is the history.
    later = await in_session.chat.completions.with_raw_response.create(
        model="recorder",
        messages=[
            {"role": "user", "content": "ignored"},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    assert later.headers["x-keel-session-id"] == session
    assert later.parse().choices[0].message.content == "fake: What is my name?"
    assert _sent(stack.llm) == [
        ("system", RECORDER_PROMPT),
        ("user", "My name is Ann."),
        ("assistant", "fake: My name is Ann."),
        ("user", "What is my name?"),
    ]
    with pytest.raises(openai.ConflictError) as wrong:
        await in_session.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "hi"}]
        )
    assert wrong.value.code == "wrong_agent"


async def test_a_stateless_client_resends_the_history_and_the_model_sees_it(
    oa: AsyncOpenAI, stack: Stack
) -> None:
    history: list[Any] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "My name is Ann."}]},
    ]
    sessions = []
    for question in ("Hello?", "What is my name?"):
        first = await oa.chat.completions.with_raw_response.create(
            model="recorder", messages=history
        )
        history += [
            {"role": "assistant", "content": first.parse().choices[0].message.content},
            {"role": "user", "content": question},
        ]
        sessions.append(first.headers["x-keel-session-id"])
    last = await oa.chat.completions.with_raw_response.create(model="recorder", messages=history)
    sessions.append(last.headers["x-keel-session-id"])
    assert len(set(sessions)) == 3, "each stateless request starts a session of its own"
    assert _sent(stack.llm) == [
        ("system", f"{RECORDER_PROMPT}\n\nAnswer briefly."),
        ("user", "My name is Ann."),
        ("assistant", "fake: My name is Ann."),
        ("user", "Hello?"),
        ("assistant", "fake: Hello?"),
        ("user", "What is my name?"),
    ]
    # The session's transcript holds the history it was seeded with, then its turn.
    detail = (await stack.api.http.get(f"/v1/sessions/{sessions[-1]}", headers=ANN)).json()
    assert [(m["seq"], m["role"]) for m in detail["messages"]] == [
        (0, "user"),
        (1, "assistant"),
        (2, "user"),
        (3, "assistant"),
        (4, "user"),
        (5, "assistant"),
    ]
    assert [m["turn_id"] for m in detail["messages"][:4]] == ["seed-1"] * 2 + ["seed-2"] * 2


async def test_messages_without_text_and_after_the_turn_are_left_out(
    oa: AsyncOpenAI, stack: Stack
) -> None:
    completion = await oa.chat.completions.create(
        model="recorder",
        messages=[
            {"role": "user", "content": " "},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello"},
            {"role": "developer", "content": "Be kind."},
        ],
    )
    assert completion.choices[0].message.content == "fake: Hi."
    assert _sent(stack.llm) == [("system", f"{RECORDER_PROMPT}\n\nBe kind."), ("user", "Hi.")]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_runs_inside_keel_and_the_client_sees_only_the_answer(
    oa: AsyncOpenAI, stack: Stack, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": 'find it [[call search {"query": "keel"}]]'}]
    answer = "tool results: search -> nothing found for 'keel'"
    if stream:
        chunks = await oa.chat.completions.create(model="assistant", messages=messages, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in chunks])
        assert text == answer
        return
    raw = await oa.chat.completions.with_raw_response.create(model="assistant", messages=messages)
    completion = raw.parse()
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].message.tool_calls is None
    session = raw.headers["x-keel-session-id"]
    detail = (await stack.api.http.get(f"/v1/sessions/{session}", headers=ANN)).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "tool", "assistant"]


async def test_a_turn_waiting_for_approval_answers_once_it_is_approved(
    oa: AsyncOpenAI, stack: Stack
) -> None:
    request: dict[str, Any] = {
        "model": "assistant",
        "messages": [{"role": "user", "content": '[[call lookup {"invoice": 7}]]'}],
        "extra_body": {"wait_s": 2},
        "extra_headers": {"Idempotency-Key": f"lookup-{uuid.uuid4().hex}"},
    }
    with pytest.raises(openai.ConflictError) as pending:
        await oa.chat.completions.create(**request)
    error = pending.value
    assert error.code == "approval_pending"
    assert error.response.headers["x-should-retry"] == "false"
    assert isinstance(error.body, dict)
    session, [approval] = error.body["session_id"], error.body["approval_ids"]
    assert error.response.headers["x-keel-session-id"] == session
    decided = await stack.api.http.post(
        f"/v1/sessions/{session}/approvals/{approval}", json={"decision": "approve"}, headers=ANN
    )
    assert decided.status_code == 200, decided.text
    # The same request again, with the same key: the turn's answer, not a new turn.
    again = await oa.chat.completions.with_raw_response.create(**request)
    assert again.headers["x-keel-session-id"] == session
    assert again.parse().choices[0].message.content == "tool results: lookup -> invoice 7: 40 EUR"
    replayed = await oa.chat.completions.with_raw_response.create(**request)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.headers["x-keel-session-id"] == session
    assert replayed.parse().id == again.parse().id


async def test_response_format_asks_for_json(oa: AsyncOpenAI) -> None:
    completion = await oa.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": '[[say {"city": "Oslo"}]]'}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "place",
                "schema": {"type": "object", "required": ["city"]},
            },
        },
    )
    assert completion.choices[0].message.content == '{"city": "Oslo"}'


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "c1"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
            "tools",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ],
)
async def test_bad_requests_are_400s_naming_the_field(
    oa: AsyncOpenAI, request_: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await oa.chat.completions.create(model="assistant", **request_)
    assert (refused.value.type, refused.value.code) == ("invalid_request_error", "invalid_value")
    assert refused.value.param is not None and refused.value.param.startswith(param)


async def test_errors_are_openais_shape_and_classes(stack: Stack, oa: AsyncOpenAI) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as unknown:
        await oa.chat.completions.create(model="gpt-4o", messages=hi)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.APIStatusError) as too_large:
        await oa.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "x" * MAX_BODY}]
        )
    assert (too_large.value.status_code, too_large.value.code) == (413, "request_too_large")
    # No key at all (the client always has one: it is left out of the request), or a bad one.
    for client, auth in ((oa, openai.omit), (stack.client(key="not-a-key-of-ours-at-all"), None)):
        headers = {"Authorization": auth} if auth is not None else None
        with pytest.raises(openai.AuthenticationError) as unauthorized:
            await client.models.list(extra_headers=headers)
        assert unauthorized.value.code == "invalid_api_key"
        assert ("needs a key" in unauthorized.value.message) == (auth is not None)
    with pytest.raises(openai.BadRequestError) as nobody:
        await stack.client(user=None).models.list()
    assert nobody.value.code == "user_id_required"


async def test_another_users_session_is_not_found(stack: Stack, oa: AsyncOpenAI) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "mine"}]
    )
    bob = stack.client(user="bob").with_options(
        default_headers={"X-Keel-Session-Id": raw.headers["x-keel-session-id"]}
    )
    with pytest.raises(openai.NotFoundError) as hidden:
        await bob.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "yours?"}]
        )
    assert hidden.value.code == "session_not_found"
