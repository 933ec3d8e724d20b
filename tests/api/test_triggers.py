"""`/v1/triggers`: templates filled from data, signatures, sessions started or continued."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.triggers import sign
from tests.conftest import running_workers

SECRET = "whsec-test-0123456789"


@pytest.fixture
def formation(monkeypatch: pytest.MonkeyPatch) -> Formation:
    monkeypatch.setenv("TICKET_HOOK_SECRET", SECRET)
    return formation_from_data(
        {
            "models": {"default": {"provider": "echo"}},
            "agents": [{"name": "triage"}],
            "triggers": [
                {
                    "name": "new-ticket",
                    "agent": "triage",
                    "template": "New ticket: {{ data.title }} from {{ data.user.name }}",
                },
                {
                    "name": "signed",
                    "agent": "triage",
                    "template": "Ping {{ data.n }}",
                    "secret_env": "TICKET_HOOK_SECRET",
                },
            ],
        },
        env={},
    )


async def test_triggers_are_listed(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v1/triggers")).json()["triggers"]
    assert [(t["name"], t["agent"], t["signed"]) for t in listed] == [
        ("new-ticket", "triage", False),
        ("signed", "triage", True),
    ]


async def test_a_trigger_renders_its_template_and_answers(api: httpx.AsyncClient) -> None:
    fired = await api.post(
        "/v1/triggers/new-ticket",
        json={"data": {"title": "Printer on fire", "user": {"name": "Ann"}}, "mode": "sync"},
    )
    assert fired.status_code == 200, fired.text
    body = fired.json()
    assert body["message"]["content"] == "echo: New ticket: Printer on fire from Ann"
    session = (await api.get(f"/v1/sessions/{body['session_id']}")).json()
    assert session["agent"] == "triage"

    again = await api.post(
        "/v1/triggers/new-ticket",
        json={
            "data": {"title": "Still burning", "user": {"name": "Ann"}},
            "session_id": body["session_id"],
        },
    )
    assert again.status_code == 202
    assert again.json()["session_id"] == body["session_id"]


async def test_missing_data_is_a_422_naming_the_fields(api: httpx.AsyncClient) -> None:
    fired = await api.post("/v1/triggers/new-ticket", json={"data": {"user": {}}})
    assert fired.status_code == 422
    problem = fired.json()
    assert problem["missing"] == ["data.title", "data.user.name"]


async def test_a_signed_trigger_refuses_a_bad_signature(api: httpx.AsyncClient) -> None:
    raw = json.dumps({"data": {"n": 1}}).encode()
    headers = {"content-type": "application/json"}
    unsigned = await api.post("/v1/triggers/signed", content=raw, headers=headers)
    assert unsigned.status_code == 401
    forged = await api.post(
        "/v1/triggers/signed",
        content=raw,
        headers={**headers, "X-Keel-Signature": sign(b"wrong key", raw)},
    )
    assert forged.status_code == 401
    assert forged.json()["type"] == "/problems/bad-signature"
    good = await api.post(
        "/v1/triggers/signed",
        content=raw,
        headers={**headers, "X-Keel-Signature": sign(SECRET.encode(), raw)},
    )
    assert good.status_code == 202


async def test_an_unknown_trigger_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/triggers/nope", json={})).status_code == 404
    await asyncio.sleep(0)


async def test_with_keys_an_unsigned_trigger_needs_a_key_and_a_signed_one_its_signature(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    key = "trigger-admin-0123456789abcdef"
    keyed = settings.model_copy(update={"admin_keys": key})
    app = create_app(keyed, formation, client=client, store=store)
    raw = json.dumps({"data": {"n": 1}}).encode()
    json_body = {"content-type": "application/json"}
    async with (
        running_workers(client, keyed, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        data = {"data": {"title": "t", "user": {"name": "n"}}}
        assert (await http.post("/v1/triggers/new-ticket", json=data)).status_code == 401
        assert (await http.get("/v1/triggers")).status_code == 401
        with_key = await http.post(
            "/v1/triggers/new-ticket", json=data, headers={"Authorization": f"Bearer {key}"}
        )
        assert with_key.status_code == 202
        signed = await http.post(
            "/v1/triggers/signed",
            content=raw,
            headers={**json_body, "X-Keel-Signature": sign(SECRET.encode(), raw)},
        )
        assert signed.status_code == 202, signed.text
