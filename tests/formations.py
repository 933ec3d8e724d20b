"""Formations tests in several folders share."""

from __future__ import annotations

from keel.formation import Formation, formation_from_data


def gated_lookup() -> Formation:
    """One agent, `assistant`, whose `lookup` tool waits for a person's approval every time."""
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
        },
        env={},
    )
