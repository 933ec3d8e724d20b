"""The worker host: what a process running workers owns (Python tools, MCP sessions) and when."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from mcp import MCPError
from temporalio.client import Client
from temporalio.worker import Worker

from activities import McpPool, McpUnavailable, ToolCatalog
from activities._cache import open_cache
from keel.deltas import DeltaBus
from keel.formation import Formation, FormationError, FormationProblem
from keel.logging import get_logger
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.tool_patterns import resolve, server_of
from keel.tools import BUILTIN_TOOLS, PythonTool, load_python_tools
from worker._build import build_workers

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def worker_host(
    client: Client,
    *,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    services: Mapping[str, object] | None = None,
    task_queues: Sequence[str] | None = None,
    max_concurrent_activities: int = 100,
    vector_memory: VectorMemory | None = None,
    deltas: DeltaBus | None = None,
) -> AsyncIterator[list[Worker]]:
    """Load the formation's tools, build the workers, and close MCP sessions on exit.

    The response cache of models with `cache_ttl_s` lives in Redis when the settings
    name one (`KEEL_REDIS_URL`), else in `store`; it is closed on exit too.

    On entry it imports the `python_tools` modules, lists the tools of the MCP
    servers agents use (a server that cannot be reached is logged and checked
    later, when called), and refuses tool references that resolve to nothing.
    The caller runs the workers it yields and stops them before leaving, so
    in-flight tool calls finish before their MCP sessions close::

        async with worker_host(client, settings=s, formation=f, store=st) as workers:
            await asyncio.gather(*(w.run() for w in workers))

    Args:
        client: A client built by `keel.temporal.connect`.
        settings: The process settings (queue names).
        formation: The formation.
        store: The transcript store the activities write to.
        services: Objects for Python tools that `inject` them, by parameter name.
        task_queues: Poll only these queues (see `build_workers`).
        max_concurrent_activities: Per worker.
        vector_memory: The vector memory, when the formation enables it (the caller
            owns and closes it).
        deltas: Where LLM activities stream text; None: no streaming.

    Yields:
        The workers, built but not running.

    Raises:
        FormationError: A `python_tools` module does not import, a tool reference
            names no tool, or a tool injects a service that was not given.
    """
    services = dict(services or {})
    pool = McpPool(formation.mcp_servers)
    cache = open_cache(settings.redis_url, store)
    try:
        # Every queue runs model calls (the sessions queue too), which need tool schemas.
        catalog = await _load_tools(formation, pool, services)
        yield build_workers(
            client,
            settings=settings,
            formation=formation,
            store=store,
            catalog=catalog,
            services=services,
            task_queues=task_queues,
            max_concurrent_activities=max_concurrent_activities,
            vector_memory=vector_memory,
            deltas=deltas,
            cache=cache,
        )
    finally:
        await pool.aclose()
        await cache.close()


async def _load_tools(
    formation: Formation, pool: McpPool, services: Mapping[str, object]
) -> ToolCatalog:
    python_tools = load_python_tools(formation.python_tools)
    used = list(dict.fromkeys(tool for agent in formation.agents for tool in agent.tools))
    servers = sorted({server for name in used if (server := server_of(name)) is not None})
    listed = await asyncio.gather(*(_tool_names(pool, server) for server in servers))
    known = {s: names for s, names in zip(servers, listed, strict=True) if names is not None}
    problems = formation.unresolved_tools({*python_tools, *BUILTIN_TOOLS}, known)
    problems += [
        FormationProblem("python_tools", f"tool {name!r} has the name of a built-in tool")
        for name in sorted(BUILTIN_TOOLS & python_tools.keys())
    ]
    problems += _missing_services(python_tools, resolve(used, list(python_tools)), services)
    if problems:
        raise FormationError(problems)
    log.info("tools loaded", python=sorted(python_tools), mcp_servers=servers)
    return ToolCatalog(python_tools, pool, exposed=used)


async def _tool_names(pool: McpPool, server: str) -> list[str] | None:
    """The server's tool names, or `None` (logged) when it cannot list them now."""
    try:
        return [tool.name for tool in await pool.list_tools(server)]
    except (McpUnavailable, MCPError) as e:  # a server may start later; calls say if not
        log.warning("MCP server not reachable at start", server=server, error=str(e))
        return None


def _missing_services(
    tools: Mapping[str, PythonTool], used: Sequence[str], services: Mapping[str, object]
) -> list[FormationProblem]:
    return [
        FormationProblem(
            "python_tools",
            f"tool '{name}' injects '{service}', which this worker was not given"
            " (pass it in `services` to worker_host)",
        )
        for name in used
        if name in tools
        for service in tools[name].inject
        if service not in services
    ]
