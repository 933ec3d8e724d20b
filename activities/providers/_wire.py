"""Wire-format helpers shared by the HTTP providers: safe tool names and tool-call arguments."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from activities.providers._base import ModelRequest

_SAFE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNSAFE_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_LEN = 64
_HASH_LEN = 8


class WireNames:
    """A reversible mapping between Keel tool names and names vendors accept.

    OpenAI and Anthropic only take `^[a-zA-Z0-9_-]{1,64}$`, while Keel names may
    hold dots (`time.get_current_time` → `time__get_current_time`). The mapping
    is built per request, from the same inputs on every retry, so it is stable.

    Args:
        names: Every tool name the request mentions: the offered tools first,
            then names from earlier tool calls in the transcript.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._to_wire: dict[str, str] = {}
        self._from_wire: dict[str, str] = {}
        unique = list(dict.fromkeys(names))
        # Names that are already safe keep themselves, so they claim their spelling
        # before any rewritten name can collide with it.
        for name in (n for n in unique if _SAFE.match(n)):
            self._claim(name, name)
        for name in (n for n in unique if not _SAFE.match(n)):
            self._claim(name, self._candidate(name))

    def _candidate(self, name: str) -> str:
        readable = _UNSAFE_CHARS.sub("_", name.replace(".", "__"))
        if _SAFE.match(readable) and readable not in self._from_wire:
            return readable
        digest = hashlib.sha256(name.encode()).hexdigest()
        for extra in range(len(digest) - _HASH_LEN + 1):
            suffix = "_" + digest[extra : extra + _HASH_LEN]
            candidate = readable[: _MAX_LEN - len(suffix)] + suffix
            if candidate not in self._from_wire:
                return candidate
        raise ValueError(f"cannot find a wire name for tool {name!r}")  # pragma: no cover

    def _claim(self, name: str, wire: str) -> None:
        self._to_wire[name] = wire
        self._from_wire[wire] = name

    def to_wire(self, name: str) -> str:
        """The vendor-safe spelling of a Keel tool name.

        Args:
            name: A Keel tool name; one not given at construction is added now.

        Returns:
            The wire name.
        """
        if name not in self._to_wire:
            keep = _SAFE.match(name) and name not in self._from_wire
            self._claim(name, name if keep else self._candidate(name))
        return self._to_wire[name]

    def from_wire(self, wire: str) -> str:
        """The Keel tool name behind a name the model used.

        Args:
            wire: The tool name found in the vendor's response.

        Returns:
            The Keel name; an unknown name is returned unchanged, so the caller can
            report "no such tool" with what the model actually said.
        """
        return self._from_wire.get(wire, wire)


def wire_names_for(request: ModelRequest) -> WireNames:
    """The name mapping for one request: its tools, then tool calls in its transcript.

    Args:
        request: The model request.

    Returns:
        A mapping that also covers tools called earlier but no longer offered.
    """
    history = (call.name for message in request.messages for call in message.tool_calls)
    return WireNames([*(tool.name for tool in request.tools), *history])


def parse_arguments(text: str | None) -> dict[str, Any]:
    """Decode a tool call's JSON arguments without ever failing.

    Args:
        text: The JSON text the model produced (may be empty or malformed).

    Returns:
        The decoded object; `{}` for empty input; `{"_raw": text}` when the text is
        not a JSON object, so the tool can report the problem to the model.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}
