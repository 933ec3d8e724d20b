"""The tools a worker can run, by Keel name: Python tools and the tools of MCP servers."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import mcp.types as mt
from mcp import MCPError

from activities._mcp import McpPool, McpUnavailable
from activities.providers import ToolSpec
from keel.logging import get_logger
from keel.tool_patterns import allowed, resolve, server_of
from keel.tools import PythonTool

log = get_logger(__name__)


class ToolCatalog:
    """Where each tool name leads, and the schema the model is shown for it.

    A Python tool is named as it is declared (`lookup_invoice`); an MCP tool as
    `<server>.<tool>`. Schemas are looked up here, inside activities, so they
    never enter workflow history.

    Args:
        python_tools: The worker's Python tools, by name.
        mcp: The worker's MCP session pool.
        exposed: The only tools to serve: the names and patterns (`server.*`) the
            formation's agents list; `None` serves every tool found.
    """

    def __init__(
        self,
        python_tools: Mapping[str, PythonTool] | None = None,
        mcp: McpPool | None = None,
        *,
        exposed: Collection[str] | None = None,
    ) -> None:
        self._python = dict(python_tools or {})
        self.mcp = mcp
        self._exposed = None if exposed is None else frozenset(exposed)

    def python_tool(self, name: str) -> PythonTool | None:
        """The Python tool called `name`, if it is served."""
        return self._python.get(name) if self._serves(name) else None

    def mcp_tool(self, name: str) -> tuple[str, str] | None:
        """`(server, tool)` for an MCP tool name that is served."""
        server, dot, tool = name.partition(".")
        if dot and self.mcp and server in self.mcp.configs and self._serves(name):
            return server, tool
        return None

    async def specs(self, names: list[str]) -> list[ToolSpec]:
        """The specs of the served tools among `names` (patterns resolved), in order.

        An MCP server that cannot list its tools is left out (and logged), so a
        server that is down costs the model its tools, not the whole turn.
        """
        listed: dict[str, dict[str, mt.Tool]] = {}
        for server in dict.fromkeys(filter(None, map(server_of, names))):
            if self.mcp is not None and server in self.mcp.configs:
                listed[server] = await self._list(server)
        available = [*self._python, *(f"{s}.{t}" for s, tools in listed.items() for t in tools)]
        specs: list[ToolSpec] = []
        for name in resolve(names, available):
            python = self.python_tool(name)
            target = self.mcp_tool(name)
            if python is not None:
                specs.append(
                    ToolSpec(
                        name=name, description=python.description, parameters=python.parameters
                    )
                )
            elif target is not None and (found := listed.get(target[0], {}).get(target[1])):
                specs.append(
                    ToolSpec(
                        name=name,
                        description=found.description or "",
                        parameters=found.input_schema,
                    )
                )
        return specs

    async def _list(self, server: str) -> dict[str, mt.Tool]:
        assert self.mcp is not None
        try:
            return {tool.name: tool for tool in await self.mcp.list_tools(server)}
        except (McpUnavailable, MCPError) as e:
            log.warning("MCP tools not listed", server=server, error=str(e))
            return {}

    def _serves(self, name: str) -> bool:
        return self._exposed is None or allowed(name, self._exposed)
