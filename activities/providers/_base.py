"""The contract every LLM provider meets, so the LLM activity treats them alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from keel.contracts.llm import ToolSpec
from keel.formation import ModelConfig
from keel.messages import Message, ToolCall, Usage

OnDelta = Callable[[str], Awaitable[None]]
"""Called with each piece of text as the model produces it."""


class ModelRequest(BaseModel):
    """Everything a provider needs for one call."""

    model: ModelConfig
    system_prompt: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    response_schema: dict[str, Any] | None = None
    """JSON Schema for the final answer; providers with native support enforce it."""
    attempt: int = 1
    """The activity attempt (1 on the first try); the scripted provider's `fail` uses it."""


class ModelResponse(BaseModel):
    """The model's answer: text, tool calls, or both."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    """The provider's token counts; None when it sent none (the LLM activity then counts)."""
    stop_reason: str | None = None
    cached: bool = False
    """Answered from the response cache: no request reached the provider."""


class Provider(Protocol):
    """One LLM vendor (or the offline `echo`/`scripted` stand-ins)."""

    async def complete(
        self, request: ModelRequest, *, on_delta: OnDelta | None = None
    ) -> ModelResponse:
        """Call the model. Streams text to `on_delta` when given.

        Raises:
            temporalio.exceptions.ApplicationError: vendor errors, mapped so that
                408/409/429/5xx and connection errors retry (with
                `next_retry_delay` from Retry-After) and other 4xx do not.
        """
        ...
