"""API keys: who gets in, and what each caller can see (another user's or tenant's data: 404)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers

ADMIN = "admin-key-0123456789abcdef"
ACME_ADMIN = "acme-admin-0123456789abcdef"
CLIENT = "client-key-0123456789abcdef"
ACME_CLIENT = "acme-client-0123456789abcdef"


def auth(key: str, user: str | None = None, **headers: str) -> dict[str, str]:
    """Request headers for `key`, acting for `user`."""
    out = {"Authorization": f"Bearer {key}", **headers}
    if user:
        out["X-User-Id"] = user
    return out


@pytest.fixture
async def api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with admin and client keys, one of each bound to tenant `acme`."""
    settings = settings.model_copy(
        update={
            "admin_keys": f"{ADMIN}, {ACME_ADMIN}@acme",
            "client_keys": f"{CLIENT},{ACME_CLIENT}@acme",
        }
    )
    app = create_app(settings, formation, client=client, store=store)
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http


async def _chat(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.post("/v1/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _ids(api: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[str]:
    page = await api.get("/v1/sessions", headers=headers, params=params)
    assert page.status_code == 200, page.text
    return [s["id"] for s in page.json()["sessions"]]


async def _wait_listed(api: httpx.AsyncClient, headers: dict[str, str], session: str) -> None:
    """Wait out visibility's lag until `headers` list `session`."""
    for _ in range(50):
        if session in await _ids(api, headers):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{session} was never listed")


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="keel"'),
        ({"Authorization": "Bearer not-a-key-of-ours-at-all"}, 'error="invalid_token"'),
        ({"Authorization": f"Basic {ADMIN}"}, 'Bearer realm="keel"'),
        ({"Authorization": f"Bearer {ADMIN}x"}, 'error="invalid_token"'),
    ],
)
async def test_no_or_a_wrong_key_gets_401(
    api: httpx.AsyncClient, headers: dict[str, str], challenge: str
) -> None:
    for response in (
        await api.get("/v1/agents", headers=headers),
        await api.get("/v1/sessions", headers=headers),
        await api.post("/v1/chat", json={"message": "hi"}, headers=headers),
        await api.get("/v1/sessions/abc/turns/def", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert challenge in response.headers["www-authenticate"]
        assert response.json()["type"] == "/problems/unauthorized"


async def test_a_client_key_must_name_its_user(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/sessions", headers=auth(CLIENT))
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/user-id-required"
    assert (await api.get("/v1/agents", headers=auth(CLIENT, "ann"))).status_code == 200


async def test_user_b_cannot_read_or_act_on_user_a_s_session(api: httpx.AsyncClient) -> None:
    ann, bob = auth(CLIENT, "ann"), auth(CLIENT, "bob")
    turn = await _chat(api, ann)
    session, turn_id = turn["session_id"], turn["turn_id"]
    assert (await api.get(f"/v1/sessions/{session}", headers=ann)).status_code == 200

    for response in (
        await api.get(f"/v1/sessions/{session}", headers=bob),
        await api.get(f"/v1/sessions/{session}/turns/{turn_id}", headers=bob),
        await api.post("/v1/chat", json={"message": "hi", "session_id": session}, headers=bob),
        await api.delete(f"/v1/sessions/{session}", headers=bob),
        # An admin acting as a user is scoped like that user.
        await api.get(f"/v1/sessions/{session}", headers=auth(ADMIN, "bob")),
    ):
        # 404, not 403: bob learns nothing, not even that the id exists.
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "/problems/session-not-found"
    # An admin key without a user sees every user's sessions of its tenant...
    await _wait_listed(api, auth(ADMIN), session)
    # ...bob does not, even naming ann in the filter.
    assert session not in await _ids(api, bob)
    assert session not in await _ids(api, bob, user_id="ann")
    assert (await api.get(f"/v1/sessions/{session}", headers=auth(ADMIN))).status_code == 200
    # ...and the owner can still close it.
    assert (await api.delete(f"/v1/sessions/{session}", headers=ann)).status_code == 200


async def test_a_client_key_cannot_start_a_session_for_another_user(
    api: httpx.AsyncClient,
) -> None:
    for response in (
        await api.post("/v1/sessions", json={"user_id": "ann"}, headers=auth(CLIENT, "bob")),
        await api.post(
            "/v1/chat", json={"message": "hi", "user_id": "ann"}, headers=auth(CLIENT, "bob")
        ),
    ):
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/user-forbidden"
    own = await api.post("/v1/sessions", json={"user_id": "bob"}, headers=auth(CLIENT, "bob"))
    assert own.status_code == 201
    # An admin may open a session on a user's behalf.
    theirs = await api.post("/v1/sessions", json={"user_id": "ann"}, headers=auth(ADMIN))
    assert theirs.status_code == 201 and theirs.json()["user_id"] == "ann"


async def test_tenants_never_see_each_other(api: httpx.AsyncClient) -> None:
    turn = await _chat(api, auth(ACME_CLIENT, "ann"))
    session = turn["session_id"]
    detail = (await api.get(f"/v1/sessions/{session}", headers=auth(ACME_CLIENT, "ann"))).json()
    assert detail["workflow_id"] == f"keel/acme/{session}"

    # acme's admin sees it; so does an unbound admin that picks the tenant.
    await _wait_listed(api, auth(ACME_ADMIN), session)
    # The same user name in the default tenant is another user.
    for headers in (auth(CLIENT, "ann"), auth(ADMIN)):
        assert (await api.get(f"/v1/sessions/{session}", headers=headers)).status_code == 404
        assert session not in await _ids(api, headers)
    picked = auth(ADMIN, **{"X-Tenant-Id": "acme"})
    assert (await api.get(f"/v1/sessions/{session}", headers=picked)).status_code == 200

    # A bound key, or any client key, cannot pick another tenant.
    for headers in (
        auth(CLIENT, "ann", **{"X-Tenant-Id": "acme"}),
        auth(ACME_CLIENT, "ann", **{"X-Tenant-Id": "default"}),
        auth(ACME_ADMIN, **{"X-Tenant-Id": "default"}),
    ):
        response = await api.get(f"/v1/sessions/{session}", headers=headers)
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/tenant-forbidden"


async def test_health_details_and_metrics_are_for_admins(api: httpx.AsyncClient) -> None:
    public = await api.get("/health")
    assert public.status_code == 200 and set(public.json()) == {"status", "version"}
    assert set((await api.get("/health", headers=auth(CLIENT, "ann"))).json()) == {
        "status",
        "version",
    }
    assert "temporal" in (await api.get("/health", headers=auth(ADMIN))).json()

    assert (await api.get("/metrics")).status_code == 401
    assert (await api.get("/metrics", headers=auth(CLIENT, "ann"))).status_code == 403
    assert (await api.get("/metrics", headers=auth(ADMIN))).status_code == 200


async def test_the_openapi_document_declares_bearer_auth(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    responses = spec["paths"]["/v1/sessions"]["get"]["responses"]
    assert {"401", "403", "422", "429"} <= set(responses)
