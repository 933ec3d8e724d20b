"""`POST /v1/agents/{name}/run`: run one specialist directly."""

from __future__ import annotations

import httpx
import pytest

from keel.formation import Formation, formation_from_data


@pytest.fixture
def formation() -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "echo"}},
            "agents": [
                {"name": "triage", "role": "coordinator", "routes": ["billing"]},
                {"name": "billing", "description": "Answers billing questions"},
            ],
        },
        env={},
    )


async def test_a_specialist_runs_directly_and_keeps_its_session(api: httpx.AsyncClient) -> None:
    first = await api.post("/v1/agents/billing/run", json={"message": "invoice 7?"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["message"]["content"] == "echo: invoice 7?"
    session = (await api.get(f"/v1/sessions/{body['session_id']}")).json()
    assert session["agent"] == "billing"

    again = await api.post(
        "/v1/agents/billing/run", json={"message": "and 8?", "session_id": body["session_id"]}
    )
    assert again.json()["message"]["content"] == "echo: and 8?"
    wrong = await api.post(
        "/v1/agents/triage/run", json={"message": "hi", "session_id": body["session_id"]}
    )
    assert wrong.status_code == 409
    assert (await api.post("/v1/agents/nobody/run", json={"message": "hi"})).status_code == 404
