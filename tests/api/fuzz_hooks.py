"""Schemathesis hooks for tests/api/test_fuzz.py: the fuzzer as a client that keeps the rules.

An `Idempotency-Key` names one request: sent again with another body it is refused (422
`idempotency-key-reused`, as the IETF draft says), and no schema can say "unique". The
fuzzer draws few distinct keys ("0", "A", ...), so a valid key drawn for a new case is made
that case's own; an invalid key (the case's negative part) is sent as drawn.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

from api._idempotency import KEY_PATTERN

_SUFFIX = 33
"""`-` and 32 hex digits."""
_KEY = re.compile(KEY_PATTERN)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Give each case with a valid `Idempotency-Key` a key of its own."""
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and _KEY.match(value):
            headers[name] = f"{value[: 255 - _SUFFIX]}-{uuid.uuid4().hex}"
