"""An MCP server (the mcp SDK's own) that reports what it received, for tests.

Run as `python tests/fakes/mcp_probe.py` (stdio), or with `--http PORT` (streamable HTTP).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from mcp.server.mcpserver import Context, MCPServer

IDEMPOTENCY_META_KEY = "keel/idempotency-key"
"""As `activities._mcp` sends it; not imported from there, which would slow start-up."""

server = MCPServer("keel-probe")


@server.tool()
async def idempotency_key(ctx: Context) -> str:
    """The idempotency key the request carried in its `_meta`."""
    return str((ctx.request_context.meta or {}).get(IDEMPOTENCY_META_KEY))


@server.tool()
async def header(name: str, ctx: Context) -> str:
    """The value of one HTTP request header."""
    return str((ctx.headers or {}).get(name.lower()))


@server.tool()
async def sleep(seconds: float) -> str:
    """Answer after a while."""
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Serve one more tool, called `name` (it answers its name), and say the list changed."""

    def grown() -> str:
        return name

    server.add_tool(grown, name=name, description=f"A tool grown at run time: {name}.")
    await ctx.notify_tools_changed()
    return f"now serving {name}"


@server.tool()
async def dawdle(seconds: float, log: str) -> str:
    """Answer after a while, noting in the file `log` when it starts and ends (`done`, or
    `cancelled` when the client cancels the request)."""
    _note(log, "started")
    try:
        await asyncio.sleep(seconds)
    except BaseException:  # anyio's cancellation of the handler
        _note(log, "cancelled")
        raise
    _note(log, "done")
    return "dawdled"


def _note(path: str, what: str) -> None:
    with open(path, "a") as out:
        out.write(f"{what} {time.time()}\n")


@server.tool()
def crash() -> str:
    """Exit the server process at once, mid-call."""
    os._exit(3)


if __name__ == "__main__":
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server.run("streamable-http", port=port)
    else:
        server.run()
