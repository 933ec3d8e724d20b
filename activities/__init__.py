"""Activities: every piece of I/O a session does (LLM calls, tools, memory)."""

from activities._catalog import ToolCatalog
from activities._mcp import McpPool, McpUnavailable
from activities.llm import CALL_MODEL, CallModelInput, CallModelResult, LlmActivities
from activities.tools import CALL_TOOL, CallToolInput, CallToolResult, ToolActivities

__all__ = [
    "CALL_MODEL",
    "CALL_TOOL",
    "CallModelInput",
    "CallModelResult",
    "CallToolInput",
    "CallToolResult",
    "LlmActivities",
    "McpPool",
    "McpUnavailable",
    "ToolActivities",
    "ToolCatalog",
]
