"""Tool references with wildcards: `server.*`, or a glob such as `fs.read_*`, names every
matching tool.

Pure functions, shared by the formation's checks, the worker's tool catalog, the API and the
session workflow (which checks a model's calls against its agent's references): a literal
reference matches only its own name, so formations without patterns behave as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TypeVar

GLOB_CHARACTERS = frozenset("*?[")
"""What makes a reference a pattern (`fnmatch`'s syntax, case-sensitive)."""

_Policy = TypeVar("_Policy")


def is_pattern(reference: str) -> bool:
    """Whether `reference` names tools by a glob rather than one tool by name."""
    return not GLOB_CHARACTERS.isdisjoint(reference)


def matches(reference: str, name: str) -> bool:
    """Whether the tool `name` is one `reference` names."""
    return fnmatchcase(name, reference) if is_pattern(reference) else name == reference


def allowed(name: str, references: Iterable[str]) -> bool:
    """Whether any of `references` names the tool `name`."""
    return any(matches(reference, name) for reference in references)


def resolve(references: Iterable[str], available: Sequence[str]) -> list[str]:
    """The tools `references` name, in their order: a literal as it is, a pattern as the
    `available` tools it matches, in the order they are listed; each tool once."""
    resolved: dict[str, None] = {}
    for reference in references:
        if is_pattern(reference):
            resolved.update((name, None) for name in available if fnmatchcase(name, reference))
        else:
            resolved[reference] = None
    return list(resolved)


def policy_for(name: str, policies: Mapping[str, _Policy], default: _Policy) -> _Policy:
    """The policy for tool `name`: its own entry, else the first pattern (in the mapping's
    order) that matches it, else `default`."""
    if name in policies:
        return policies[name]
    return next(
        (policy for key, policy in policies.items() if is_pattern(key) and fnmatchcase(name, key)),
        default,
    )


def server_of(reference: str) -> str | None:
    """The MCP server a reference names tools of (`server` of `server.tool`), if any."""
    server, dot, _ = reference.partition(".")
    return server if dot else None
