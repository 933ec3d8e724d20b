"""The tool activity: run one tool call and hand back its result, never raising on tool failure."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities._references import References

CALL_TOOL = "keel.tools.call_tool"


class CallToolInput(BaseModel):
    """One tool call of one turn."""

    session: str
    turn_id: str
    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries: tools that write can deduplicate on it."""
        return f"{self.session}/{self.turn_id}/{self.call_id}"


class CallToolResult(BaseModel):
    """What goes back to the model: the tool's text, or its error."""

    content: str
    is_error: bool = False
    ref: str | None = None
    """Set when the full content was too large for history: `content` is then its glimpse."""


class ToolActivities:
    """Tool activities of a worker. Only the error path exists until tools are configured.

    Args:
        references: keeps large results out of history (default: nothing is kept out).
    """

    def __init__(self, references: References | None = None) -> None:
        self._references = references or References(None)

    @activity.defn(name=CALL_TOOL)
    async def call_tool(self, input: CallToolInput) -> CallToolResult:
        """Run a tool call. A failing tool is an error *result*, so the turn goes on."""
        result = CallToolResult(content=f"no tool named {input.name!r} is loaded", is_error=True)
        return await self._out_of_history(input, result)

    async def _out_of_history(self, input: CallToolInput, result: CallToolResult) -> CallToolResult:
        """Every result passes here last: a large one becomes `{ref, glimpse}` before history."""
        content, ref = await self._references.keep_out_of_history(
            input.session, input.idempotency_key, result.content
        )
        return result.model_copy(update={"content": content, "ref": ref})
