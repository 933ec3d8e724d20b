"""Agents' tool references (names and patterns) against the tools a worker has found."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from keel.formation._errors import Loc
from keel.tool_patterns import allowed, is_pattern, matches, server_of

if TYPE_CHECKING:
    from keel.formation._models import AgentConfig


def unresolved_references(
    agents: Sequence[AgentConfig],
    known_python_tools: Collection[str],
    known_mcp_tools: Mapping[str, Collection[str]],
    *,
    show: Callable[[str, Loc], str],
) -> list[tuple[Loc, str]]:
    """Each reference that names no known tool, with why; servers not listed are not checked.

    Args:
        agents: The formation's agents.
        known_python_tools: The Python tools the worker registered.
        known_mcp_tools: Tool names per MCP server that could be listed.
        show: Quotes a value for a message (or hides one that came from the environment).
    """
    problems: list[tuple[Loc, str]] = []
    for i, agent in enumerate(agents):
        for j, tool in enumerate(agent.tools):
            loc: Loc = ("agents", i, "tools", j)
            server = server_of(tool)
            listed = known_python_tools if server is None else known_mcp_tools.get(server)
            wanted = tool if server is None else tool.partition(".")[2]
            if listed is None or any(matches(wanted, known) for known in listed):
                continue  # found, or on a server that could not be listed now
            if is_pattern(tool):
                message = f"tool pattern {show(tool, loc)} matches no tool"
            elif server is not None:
                message = f"MCP server {show(server, loc)} has no such tool"
            else:
                message = (
                    f"no Python tool is called {show(tool, loc)}; list its module under"
                    " python_tools, or write an MCP tool as `server.tool`"
                )
            problems.append((loc, message))
    return problems


def may_be_used(policy_key: str, references: Collection[str]) -> bool:
    """Whether an approval policy's tool (or pattern) can be one an agent's references name.

    A pattern against a pattern is known only once the server lists its tools: one of the
    same server (or of Python tools, for both) may be.
    """
    if allowed(policy_key, references) or any(matches(policy_key, r) for r in references):
        return True
    return is_pattern(policy_key) and any(
        is_pattern(r) and server_of(r) == server_of(policy_key) for r in references
    )
