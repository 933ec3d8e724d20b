"""Keel in other protocols' words: the agents as MCP tools (`/mcp`) and as an A2A agent (`/a2a`).

Both reach sessions through the one turn path of `/v1/chat` (`api._turns`),
behind the same keys, identity, limits and isolation (`_gate.CallerGate`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.deps import AppState
from api.protocols._a2a import A2AServer
from api.protocols._a2a_card import A2A_PATH, CARD_PATH, SKILL_KEY
from api.protocols._gate import CallerGate, ProtocolRoute
from api.protocols._mcp import TOOL_PREFIX, mcp_app

__all__ = ["A2A_PATH", "CARD_PATH", "MCP_PATH", "SKILL_KEY", "TOOL_PREFIX", "Protocols"]

MCP_PATH = "/mcp"


class Protocols:
    """The MCP and A2A endpoints of one app: `install` adds their routes, `running` is
    entered by the app's lifespan (the MCP session manager and A2A's tasks live in it).

    Args:
        state: the API's shared state.
    """

    def __init__(self, state: AppState) -> None:
        mcp, self._mcp_manager = mcp_app(state)
        self._a2a = A2AServer(state)
        # A Route, not a Mount: a Mount would redirect `/mcp` to `/mcp/`, which MCP
        # clients do not follow.
        self._routes = [ProtocolRoute(MCP_PATH, CallerGate(mcp, state)), *self._a2a.routes]

    def install(self, app: FastAPI) -> None:
        """Add the routes (outside the OpenAPI document: each protocol describes itself)."""
        app.router.routes.extend(self._routes)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run what the endpoints need while the app serves."""
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve_mcp() -> None:
            # Its own task: the session manager is an anyio task group, which must be left
            # in the task that entered it, and a lifespan's start and end may run in two
            # (as in pytest-asyncio's fixtures).
            async with self._mcp_manager.run():
                started.set()
                await stop.wait()

        mcp = asyncio.create_task(serve_mcp())
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait([mcp, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if mcp.done():
            mcp.result()  # it failed to start: say why
        try:
            async with self._a2a.running():
                yield
        finally:
            stop.set()
            await mcp
