"""Real MCP servers for tests: `mcp-server-time` (PyPI), `server-everything` (npm), the probe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from keel.formation import McpServerConfig

ROOT = Path(__file__).resolve().parents[1]
NODE_PREFIX = ROOT / ".ci" / "node"
"""Where `.ci/run` installs the pinned npm packages (`npm ci --prefix .ci/node`)."""
EVERYTHING_BIN = NODE_PREFIX / "node_modules" / ".bin" / "mcp-server-everything"

TIME = McpServerConfig(
    name="time", transport="stdio", command=sys.executable, args=["-m", "mcp_server_time"]
)
PROBE_SCRIPT = ROOT / "tests" / "fakes" / "mcp_probe.py"
PROBE = McpServerConfig(
    name="probe", transport="stdio", command=sys.executable, args=[str(PROBE_SCRIPT)]
)


def everything_bin() -> Path:
    """The `mcp-server-everything` executable, installed from the lockfile if missing.

    Skips the calling test when Node.js or npm is not installed.
    """
    if EVERYTHING_BIN.exists():
        return EVERYTHING_BIN
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js and npm are needed for @modelcontextprotocol/server-everything")
    subprocess.run(
        ["npm", "ci", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return EVERYTHING_BIN


def everything_stdio(name: str = "everything") -> McpServerConfig:
    """server-everything over stdio."""
    return McpServerConfig(name=name, transport="stdio", command=str(everything_bin()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def http_server(
    command: list[str], port: int, *, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Run an MCP server process listening on `port`; yields its `/mcp` URL, stops it on exit."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"{command[0]} did not listen on port {port}")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def everything_http(port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """server-everything over streamable HTTP on `port`."""
    return http_server([str(everything_bin()), "streamableHttp"], port, env={"PORT": str(port)})


def probe_http(port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """The probe server over streamable HTTP on `port`."""
    return http_server([sys.executable, str(PROBE_SCRIPT), "--http", str(port)], port)


def server_processes(marker: str) -> list[psutil.Process]:
    """Live child processes of this test process whose command line mentions `marker`."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                found.append(child)
    return found
