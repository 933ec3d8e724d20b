"""`GET /v1/usage`: tokens and cost from the store, grouped, in a time range, per caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.deltas import InProcessDeltaBus
from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.metrics import API_METRICS
from tests.worker.test_metrics import samples

ADMIN = "usage-admin-0123456789abcdef"
CLIENT = "usage-client-0123456789abcdef"
ANN = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "ann"}
BOB = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "bob"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
PRICING = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}


@pytest.fixture
async def fake_llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLMServer]:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-usage-test")
    # As llama-cpp-python's server: a streamed answer carries no usage, whatever was asked.
    async with FakeLLMServer(stream_usage=False) as server:
        yield server


@pytest.fixture
def formation(fake_llm: FakeLLMServer) -> Formation:
    return formation_from_data(
        {
            "models": {
                "default": {"provider": "scripted", "pricing": PRICING},
                "llama": {
                    "provider": "openai",
                    "model": "smollm2",
                    "base_url": fake_llm.openai_base_url,
                    "api_key_env": "FAKE_LLM_KEY",
                    "pricing": PRICING,
                },
            },
            "agents": [{"name": "assistant"}, {"name": "local", "model": "llama"}],
        },
        env={},
    )


@pytest.fixture
async def api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"client_keys": CLIENT, "admin_keys": ADMIN})
    # A delta bus, so model calls stream as they do behind `keel dev`.
    deltas = InProcessDeltaBus()
    app = create_app(settings, formation, client=client, store=store, deltas=deltas)
    async with (
        running_workers(client, settings, formation, store, deltas=deltas),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http


async def _chat(api: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answered = await api.post("/v1/chat", json=body, headers=headers)
    assert answered.status_code == 200, answered.text
    result: dict[str, Any] = answered.json()
    return result


async def _usage(api: httpx.AsyncClient, headers: dict[str, str], **params: str) -> Any:
    answered = await api.get("/v1/usage", params=params, headers=headers)
    assert answered.status_code == 200, answered.text
    return answered.json()


async def test_a_streamed_turn_without_usage_reports_an_estimate_not_zero(
    api: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue_reply("Paris is the capital of France, on the river Seine.")
    turn = await _chat(api, ANN, message="What is the capital of France?", agent="local")

    usage = turn["usage"]
    assert fake_llm.requests[-1].body["stream"] is True
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    expected = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 8.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected)
    detail = (await api.get(f"/v1/sessions/{turn['session_id']}", headers=ANN)).json()
    assert detail["usage"] == usage
    stored = (
        await api.get(f"/v1/sessions/{turn['session_id']}/turns/{turn['turn_id']}", headers=ANN)
    ).json()
    assert stored["usage"] == usage


async def test_usage_groups_by_session_user_agent_and_model_per_caller(
    api: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    first = await _chat(api, ANN, message="hello")
    await _chat(api, ANN, message="again", session_id=first["session_id"])
    await _chat(api, ANN, message="local, please", agent="local")
    bob = await _chat(api, BOB, message="I am Bob")

    mine = await _usage(api, ANN, group_by="session")
    assert {item["key"] for item in mine["items"]} >= {first["session_id"]}
    assert bob["session_id"] not in {item["key"] for item in mine["items"]}
    [session] = [item for item in mine["items"] if item["key"] == first["session_id"]]
    assert session["turns"] == 2
    assert session["prompt_tokens"] > 0 and session["cost_usd"] > 0
    # A client key sees its own user's calls, whatever user it asks for.
    assert [
        i["key"] for i in (await _usage(api, ANN, group_by="user", user_id="bob"))["items"]
    ] == ["ann"]

    users = await _usage(api, ADMIN_HEADERS, group_by="user", since=start.isoformat())
    assert {"ann", "bob"} <= {item["key"] for item in users["items"]}
    agents = await _usage(api, ADMIN_HEADERS, group_by="agent", since=start.isoformat())
    assert {"assistant", "local"} <= {item["key"] for item in agents["items"]}
    models = await _usage(api, ANN, group_by="model")
    assert {"scripted", "smollm2"} <= {item["key"] for item in models["items"]}
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await _usage(api, ADMIN_HEADERS, group_by="user", since=later))["items"] == []
    end = await _usage(api, ADMIN_HEADERS, group_by="user", until="9999-12-31T23:00:00-05:00")
    assert {"ann", "bob"} <= {item["key"] for item in end["items"]}
    empty = {"since": later, "until": start.isoformat()}
    assert (await _usage(api, ADMIN_HEADERS, group_by="user", **empty))["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "tenant"},
        {"since": "yesterday"},
        {"until": "0.5"},
        {"since": "2026-12-07T09:00:00"},
        {"since": "2026-02-30T09:00:00Z"},
        {"limit": "0"},
    ],
)
async def test_bad_usage_queries_are_422_problems(
    api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    answered = await api.get("/v1/usage", params=params, headers=ANN)
    assert answered.status_code == 422, answered.text
    assert answered.headers["content-type"].startswith("application/problem+json")


async def test_the_api_exports_its_metrics(api: httpx.AsyncClient) -> None:
    await _chat(api, ANN, message="hello")
    scraped = await api.get("/metrics", headers=ADMIN_HEADERS)
    names = {name for name, _, _ in samples(scraped.text)}
    missing = {m for m in API_METRICS if m not in names and f"{m}_bucket" not in names}
    assert not missing, f"listed in tests/metrics.py but not exported: {sorted(missing)}"
