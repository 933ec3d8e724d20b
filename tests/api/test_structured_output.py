"""`response_schema`: answers that are schema-valid JSON, or a clear failure."""

from __future__ import annotations

import httpx
import pytest

from keel.formation import Formation, formation_from_data

SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "integer"}},
    "required": ["total"],
}


@pytest.fixture
def formation() -> Formation:
    return formation_from_data(
        {"models": {"default": {"provider": "scripted"}}, "agents": [{"name": "assistant"}]},
        env={},
    )


async def test_a_valid_answer_comes_back_parsed(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/chat", json={"message": '[[say {"total": 42}]]', "response_schema": SCHEMA}
    )
    body = response.json()
    assert body["status"] == "completed", body
    assert body["data"] == {"total": 42}
    assert body["message"]["content"] == '{"total": 42}'


async def test_an_answer_that_never_fits_fails_the_turn_after_retries(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/v1/chat", json={"message": '[[say {"total": "many"}]]', "response_schema": SCHEMA}
    )
    body = response.json()
    assert body["status"] == "failed"
    # The scripted model reads the correction as its new prompt and echoes it,
    # so after two retries the answer still does not fit.
    assert body["error"].startswith("the model's answer does not match the response schema")
    # The session goes on.
    again = await api.post("/v1/chat", json={"message": "hi", "session_id": body["session_id"]})
    assert again.json()["status"] == "completed"


async def test_a_schema_that_is_not_a_schema_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/chat", json={"message": "hi", "response_schema": {"type": "nonsense"}}
    )
    assert response.status_code == 422
    assert "response_schema is not a valid JSON Schema" in response.json()["detail"]
