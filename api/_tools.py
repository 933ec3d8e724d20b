"""Tool schemas as the API shows them (a console's revise editor): Python tools and MCP tools.

Schemas live with the tools, never in workflow history: the API finds them as the
worker does, from the formation's `python_tools` modules and by listing its MCP
servers, each with a short time limit so an unreachable server never holds a request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import mcp.types as mt
from mcp import MCPError
from pydantic import BaseModel, Field

from keel.formation import AgentConfig, Formation, FormationError
from keel.logging import get_logger
from keel.tool_patterns import is_pattern, policy_for, resolve, server_of
from keel.tools import PythonTool, load_python_tools

if TYPE_CHECKING:
    from activities import McpPool

log = get_logger(__name__)

MCP_LIST_TIMEOUT_S = 5.0
"""How long the API waits for an MCP server to start and list its tools."""
JsonSchema = dict[str, object]


class ToolOut(BaseModel):
    """One tool of an agent, with the JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: JsonSchema | None = None
    """The arguments' JSON schema; null when the tool's server could not be asked."""
    requires_approval: bool


class AgentToolList(BaseModel):
    """`GET /v1/agents/{name}/tools`."""

    tools: list[ToolOut]
    warnings: list[str] = Field(default_factory=list)
    """Why some schemas are missing (an MCP server that could not be reached, say)."""


class ToolSchemas:
    """The formation's tools, read in the API process; `aclose()` stops MCP servers it started.

    Args:
        formation: The formation whose tools to describe.
    """

    def __init__(self, formation: Formation) -> None:
        self._formation = formation
        self._pool: McpPool | None = None
        self._python: dict[str, PythonTool] | None = None
        self._python_problem: str | None = None

    async def of(self, agent: AgentConfig) -> AgentToolList:
        """The agent's tools, in the order the formation lists them, patterns resolved."""
        python = self._python_tools()
        listed = await self._listed_servers(agent)
        warnings = [self._python_problem] if self._python_problem else []
        warnings += [
            f"MCP server {s!r} could not be reached" for s, t in listed.items() if t is None
        ]
        tools: list[ToolOut] = []
        for name in resolve(agent.tools, self._available(python, listed)):
            found = python.get(name)
            server, _, tool = name.partition(".")
            schema: JsonSchema | None = None
            description = ""
            if found is not None:
                schema, description = found.parameters, found.description
            elif (mcp_tools := listed.get(server)) is not None and tool in mcp_tools:
                mcp_tool = mcp_tools[tool]
                schema, description = mcp_tool.input_schema, mcp_tool.description or ""
            elif server in listed and listed[server] is not None:
                continue  # the server answered and serves no such tool
            tools.append(
                ToolOut(
                    name=name,
                    description=description,
                    parameters=schema,
                    requires_approval=self._requires_approval(name),
                )
            )
        return AgentToolList(tools=tools, warnings=warnings)

    async def resolved(self, agent: AgentConfig) -> list[str]:
        """The tools the agent's references name now; a pattern lists its server (briefly)."""
        if not any(map(is_pattern, agent.tools)):
            return list(agent.tools)
        listed = await self._listed_servers(agent, patterns_only=True)
        return resolve(agent.tools, self._available(self._python_tools(), listed))

    async def _listed_servers(
        self, agent: AgentConfig, *, patterns_only: bool = False
    ) -> dict[str, dict[str, mt.Tool] | None]:
        """The tools of the MCP servers the agent's references name (None: unreachable)."""
        python = self._python_tools()
        servers = sorted(
            {
                server
                for name in agent.tools
                if (server := server_of(name)) is not None
                and name not in python
                and (is_pattern(name) or not patterns_only)
            }
        )
        return dict(zip(servers, await asyncio.gather(*map(self._list, servers)), strict=True))

    @staticmethod
    def _available(
        python: dict[str, PythonTool], listed: dict[str, dict[str, mt.Tool] | None]
    ) -> list[str]:
        return [*python, *(f"{s}.{t}" for s, tools in listed.items() for t in tools or {})]

    async def aclose(self) -> None:
        """Stop the MCP sessions this API opened."""
        if self._pool is not None:
            await self._pool.aclose()

    def _mcp_pool(self) -> McpPool:
        # Imported on the first listing: `activities` brings in every provider SDK,
        # seconds of an API's start that most of its processes never need.
        from activities import McpPool

        if self._pool is None:
            self._pool = McpPool(self._formation.mcp_servers, connect_timeout_s=MCP_LIST_TIMEOUT_S)
        return self._pool

    def _python_tools(self) -> dict[str, PythonTool]:
        if self._python is None:
            try:
                self._python = load_python_tools(self._formation.python_tools)
            except FormationError as err:  # the worker refuses such a formation at start
                log.warning("python tools not loaded", error=str(err))
                self._python, self._python_problem = {}, "python tools could not be loaded"
        return self._python

    async def _list(self, server: str) -> dict[str, mt.Tool] | None:
        """The server's tools by name; None when it cannot be reached in time."""
        from activities import McpUnavailable

        if server not in {s.name for s in self._formation.mcp_servers}:
            return None
        try:
            async with asyncio.timeout(MCP_LIST_TIMEOUT_S):
                return {t.name: t for t in await self._mcp_pool().list_tools(server)}
        except (TimeoutError, McpUnavailable, MCPError) as err:
            log.warning("MCP tools not listed", server=server, error=str(err))
            return None

    def _requires_approval(self, tool: str) -> bool:
        approvals = self._formation.approvals
        return policy_for(tool, approvals.tools, approvals.default) == "always"
