"""The tool activity: run one tool call and hand back its result, never raising on tool failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import mcp.types as mt
from mcp import MCPError
from temporalio import activity

from activities._catalog import ToolCatalog
from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from activities._mcp import McpPool, McpUnavailable, result_text
from activities._references import References
from activities._tracing import tool_span
from keel.contracts.tools import CallToolInput, CallToolResult
from keel.logging import get_logger
from keel.names import Activities
from keel.tools import PythonTool, ToolArgumentsError, ToolContext

DEFAULT_TIMEOUT_S = 60.0
"""Time limit of one call of a tool that sets none."""
MAX_RESULT_CHARS = 100_000
"""Longer results are cut: the result travels in workflow history."""
_SLACK_S = 5.0
log = get_logger(__name__)


class ToolActivities:
    """The tool activity of a worker, over its tool catalog.

    Args:
        catalog: The tools this worker runs; without one, every call is refused.
        services: Objects the host hands to Python tools that `inject` them
            (database clients, say), so they need not be serialised.
        references: Keeps large results out of history (default: nothing is kept out).
    """

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        *,
        services: Mapping[str, object] | None = None,
        references: References | None = None,
    ) -> None:
        self._catalog = catalog or ToolCatalog()
        self._services = dict(services or {})
        self._references = references or References(None)

    @activity.defn(name=Activities.CALL_TOOL)
    async def call_tool(self, input: CallToolInput) -> CallToolResult:
        """Run a tool call. A failing tool is an error *result*, so the turn goes on.

        Unknown tools, invalid arguments, exceptions, MCP errors, timeouts and
        unreachable servers all come back as `is_error=True` with the reason.
        """
        where = {"session": input.session, "turn_id": input.turn_id}
        with activity_log_context(), tool_span(input.name, input.call_id, **where) as span:
            started = time.perf_counter()
            result = await with_heartbeat(self._call(input))
            if result.is_error:
                span.set_attribute("error.type", "tool_error")
            log.info(
                "tool called",
                tool=input.name,
                is_error=result.is_error,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return await self._out_of_history(input, result)

    async def _out_of_history(self, input: CallToolInput, result: CallToolResult) -> CallToolResult:
        """Every result passes here last: a large one becomes `{ref, glimpse}` before history."""
        content, ref = await self._references.keep_out_of_history(
            input.session, input.idempotency_key, result.content
        )
        if ref is None and len(content) > MAX_RESULT_CHARS:
            # No store to keep it in: cut it, since the result travels in history.
            cut = len(content) - MAX_RESULT_CHARS
            content = f"{content[:MAX_RESULT_CHARS]}\n[… {cut} more characters cut]"
        return result.model_copy(update={"content": content, "ref": ref})

    async def _call(self, input: CallToolInput) -> CallToolResult:
        name = input.name
        python = self._catalog.python_tool(name)
        target = self._catalog.mcp_tool(name)
        pool = self._catalog.mcp
        try:
            if python is not None:
                return await _python_call(python, input, self._services)
            if target is not None and pool is not None:
                return await _mcp_call(pool, *target, input)
        except _TimedOut as e:
            return _error(f"tool {name!r} timed out after {e.args[0]:g} s")
        except ToolArgumentsError as e:
            return _error(f"invalid arguments for {name!r}: {e}")
        except McpUnavailable as e:
            return _error(str(e))
        except MCPError as e:
            return _error(f"MCP error from {name!r}: {e.message}")
        except Exception as e:  # the tool's own failure, reported to the model
            log.warning("tool raised", tool=name, exc_info=e)
            return _error(f"{name!r} failed: {type(e).__name__}: {e}")
        return _error(f"no tool named {name!r} is available")


class _TimedOut(Exception):
    """A call ran past its limit (`args[0]`, in seconds)."""


async def _python_call(
    tool: PythonTool, input: CallToolInput, services: Mapping[str, object]
) -> CallToolResult:
    context = ToolContext(
        idempotency_key=input.idempotency_key,
        session=input.session,
        turn_id=input.turn_id,
        call_id=input.call_id,
    )
    limit = _limit(tool.timeout_s)
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            text = await tool.invoke(input.arguments, services=services, context=context)
    except TimeoutError:
        if deadline.expired():
            raise _TimedOut(limit) from None
        raise  # the tool's own TimeoutError
    return CallToolResult(content=text)


async def _mcp_call(pool: McpPool, server: str, tool: str, input: CallToolInput) -> CallToolResult:
    # The limit is the SDK's per-request timeout (the server is told to stop),
    # not one around connecting: a slow-starting server must still get to answer.
    limit = _limit(pool.configs[server].timeout_s)
    try:
        result = await pool.call_tool(
            server, tool, input.arguments, idempotency_key=input.idempotency_key, timeout_s=limit
        )
    except MCPError as e:
        if e.code == mt.REQUEST_TIMEOUT:
            raise _TimedOut(limit) from None
        raise
    return CallToolResult(content=result_text(result), is_error=result.is_error)


def _limit(timeout_s: float | None) -> float:
    """The tool's own limit, kept inside the activity's, so the model hears of a timeout."""
    limit = timeout_s or DEFAULT_TIMEOUT_S
    if activity.in_activity():
        overall = activity.info().start_to_close_timeout
        if overall is not None:
            limit = min(limit, max(overall.total_seconds() - _SLACK_S, 1.0))
    return limit


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=message, is_error=True)
