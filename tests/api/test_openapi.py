"""The OpenAPI document: every input bounded, keys declared as the mode needs, live links."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api import create_app
from keel.formation import default_formation
from keel.settings import Settings
from keel.store import SqliteTranscriptStore

Schema = dict[str, Any]
KEY = "openapi-admin-0123456789abcdef"


def _app(tmp_path: Path, **settings: Any) -> FastAPI:
    return create_app(
        Settings(data_dir=tmp_path, **settings),
        default_formation(env={}),
        store=SqliteTranscriptStore(tmp_path / "keel.db"),
    )


def _document(tmp_path: Path, **settings: Any) -> Schema:
    return _app(tmp_path, **settings).openapi()


@pytest.fixture(params=["dev", "keys"])
def document(request: pytest.FixtureRequest, tmp_path: Path) -> Schema:
    return _document(tmp_path, admin_keys=KEY if request.param == "keys" else "")


def _operations(document: Schema) -> Iterator[tuple[str, Schema]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _resolve(document: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _unbounded(document: Schema, schema: Schema, where: str) -> Iterator[str]:
    """Where `schema` lets a string, a number or an array grow without limit."""
    schema = _resolve(document, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, variant in enumerate(schema.get(key, [])):
            yield from _unbounded(document, variant, f"{where}.{key}[{i}]")
    kind = schema.get("type")
    fixed = "enum" in schema or "const" in schema
    if kind == "string" and not fixed and "maxLength" not in schema:
        yield f"{where}: a string without maxLength"
    if kind in ("integer", "number") and not fixed:
        if not {"minimum", "exclusiveMinimum"} & schema.keys():
            yield f"{where}: a number without a minimum"
        if not {"maximum", "exclusiveMaximum"} & schema.keys():
            yield f"{where}: a number without a maximum"
    if kind == "array":
        if "maxItems" not in schema:
            yield f"{where}: an array without maxItems"
        yield from _unbounded(document, schema.get("items", {}), f"{where}[]")
    for name, sub in schema.get("properties", {}).items():
        yield from _unbounded(document, sub, f"{where}.{name}")


def test_every_string_number_and_array_an_operation_takes_is_bounded(document: Schema) -> None:
    found = []
    for label, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            where = f"{label} {parameter['in']} {parameter['name']}"
            found += _unbounded(document, parameter["schema"], where)
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            found += _unbounded(document, content["schema"], f"{label} body ({media})")
    assert found == []
    # The walk sees what it should: parameters and bodies alike.
    params = [p for _, op in _operations(document) for p in op.get("parameters", [])]
    assert {"after_seq", "page_token", "Last-Event-ID", "x-user-id"} <= {p["name"] for p in params}


def test_no_parameter_may_be_null(document: Schema) -> None:
    # A query or header carries text; "none" is leaving it out.
    for label, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (label, parameter)


def test_keys_are_optional_in_dev_mode_and_required_with_keys(tmp_path: Path) -> None:
    dev = dict(_operations(_document(tmp_path / "dev")))
    keys = dict(_operations(_document(tmp_path / "keys", admin_keys=KEY)))
    bearer = {"HTTPBearer": []}
    assert all(op["security"] == [{}, bearer] for op in dev.values())
    optional = {label for label, op in keys.items() if op["security"] == [{}, bearer]}
    assert optional == {"GET /health", "POST /v1/triggers/{name}"}
    assert all(op["security"] == [bearer] for label, op in keys.items() if label not in optional)


def test_the_message_limit_is_the_one_the_api_enforces(tmp_path: Path) -> None:
    schemas = _document(tmp_path, max_message_chars=500)["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["message"]["maxLength"] == 500
    assert schemas["RunAgent"]["properties"]["message"]["maxLength"] == 500
    content = schemas["ChatMessageIn"]["properties"]["content"]["anyOf"]
    assert [v.get("maxLength") for v in content if v.get("type") == "string"] == [500]
    assert schemas["ContentPart"]["properties"]["text"]["maxLength"] == 500


def test_the_openai_routes_declare_openais_errors_and_no_422(document: Schema) -> None:
    openai = {label: op for label, op in _operations(document) if "/v1/models" in label}
    openai["POST /v1/chat/completions"] = document["paths"]["/v1/chat/completions"]["post"]
    assert len(openai) == 3
    for label, operation in openai.items():
        errors = {status: r for status, r in operation["responses"].items() if status >= "400"}
        assert "422" not in errors, label
        refs = {r["content"]["application/json"]["schema"]["$ref"] for r in errors.values()}
        assert refs == {"#/components/schemas/OpenAIError"}, label
    # FastAPI's own 422 body went with the routes' 422s: no operation answers it.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_links_chain_create_chat_read_close(document: Schema) -> None:
    operations = dict(_operations(document))
    by_id = {op["operationId"]: (label, op) for label, op in operations.items()}
    targets = {}
    for label, operation in operations.items():
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                target_label, target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, (label, status, name)
                assert "requestBody" not in link or "requestBody" in target, (label, name)
                targets.setdefault(label, set()).add(target_label)
    assert {"POST /v1/chat", "GET /v1/sessions/{session_id}"} <= targets["POST /v1/sessions"]
    assert {
        "GET /v1/sessions/{session_id}",
        "GET /v1/sessions/{session_id}/turns/{turn_id}",
        "DELETE /v1/sessions/{session_id}",
    } <= targets["POST /v1/chat"]


async def test_a_wrong_method_names_every_method_of_the_path(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://keel"
    ) as http:
        answer = await http.request("PATCH", "/v1/sessions")
        # `/v1/memory/{memory_id}` matches too, but the path names the forget operation.
        forget = await http.request("OPTIONS", "/v1/memory/forget")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "GET, POST"
    assert (forget.status_code, forget.headers["allow"]) == (405, "POST")
