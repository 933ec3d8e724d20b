"""Triggers: render a trigger's message from its data, and check a webhook's signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "SIGNATURE_HEADER",
    "TriggerDataError",
    "check_template",
    "render_message",
    "sign",
    "signature_ok",
]

SIGNATURE_HEADER = "X-Keel-Signature"
"""`sha256=<hex HMAC-SHA256 of the raw request body>`, as GitHub-style webhooks send it."""


class TriggerDataError(ValueError):
    """The data does not fill the template: `missing` names each absent field."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing fields: " + ", ".join(missing))
        self.missing = missing


def render_message(template: str, data: Mapping[str, Any]) -> str:
    """Render a trigger's template with `data` in a sandbox (no access to Python internals).

    Raises:
        TriggerDataError: fields the template uses are absent from `data`.
        jinja2.TemplateError: the template itself is broken or does something
            the sandbox forbids.
    """
    missing: list[str] = []
    paths = _paths(data, "data")

    class Missing(ChainableUndefined):
        # Collect every absent field instead of failing on the first, so the
        # caller learns all of them at once.
        def __str__(self) -> str:
            parent = paths.get(id(self._undefined_obj), "data")
            field = f"{parent}.{self._undefined_name}"
            if self._undefined_name is not None and field not in missing:
                missing.append(field)
            return ""

    environment = SandboxedEnvironment(undefined=Missing, autoescape=False)
    rendered = environment.from_string(template).render(data=data)
    if missing:
        raise TriggerDataError(missing)
    return rendered


def _paths(value: Any, path: str, depth: int = 8) -> dict[int, str]:
    """Where each nested mapping sits in the data, to name a missing field fully."""
    found = {id(value): path}
    if depth and isinstance(value, Mapping):
        for key, child in value.items():
            if isinstance(child, Mapping):
                found |= _paths(child, f"{path}.{key}", depth - 1)
    return found


def check_template(template: str) -> str | None:
    """Why a template cannot be compiled, or None when it can."""
    try:
        SandboxedEnvironment().parse(template)
    except TemplateError as err:
        return str(err)
    return None


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the right signature of `body`, compared in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())
