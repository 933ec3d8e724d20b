"""Structured output: check a final answer against a JSON Schema, and say what is wrong."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

STRUCTURED_RETRIES = 2
"""How many times a model is asked again after an answer that breaks the schema."""


def schema_problems(text: str, schema: dict[str, Any]) -> list[str]:
    """Why `text` is not a JSON document valid under `schema` (empty when it is)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        return [f"the answer is not JSON: {err.msg} at position {err.pos}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def correction(problems: list[str]) -> str:
    """The message that asks the model to try again."""
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        "Your answer does not match the required JSON Schema:\n"
        f"{listed}\nAnswer again with only the corrected JSON document."
    )
