"""Activities: every piece of I/O a session does (LLM calls, tools, memory).

Their inputs and results are in `keel.contracts`, their names in `keel.names`.
"""

from activities._catalog import ToolCatalog
from activities._mcp import McpPool, McpUnavailable
from activities.llm import LlmActivities
from activities.tools import ToolActivities

__all__ = ["LlmActivities", "McpPool", "McpUnavailable", "ToolActivities", "ToolCatalog"]
