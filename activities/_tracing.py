"""Spans of model and tool calls, named and attributed by OpenTelemetry's GenAI conventions.

Inside an activity they nest under the SDK's `RunActivity` span, and so join the turn's
trace (keel/tracing.py). With tracing off, the tracer is OpenTelemetry's no-op one. Their
attributes name models, tools and token counts, never arguments, results or keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from activities.providers import ModelResponse
from keel.formation import ModelConfig

_tracer = trace.get_tracer("keel")


def turn_attributes(session: str, turn_id: str) -> dict[str, str]:
    """Where a span's work belongs: the session's workflow id and the turn."""
    return {"keel.workflow_id": session, "keel.turn_id": turn_id}


@contextmanager
def model_span(model: ModelConfig, *, session: str, turn_id: str) -> Iterator[Span]:
    """A `chat <model>` span around one model request; `record_answer` fills its result."""
    name = model.model or model.provider
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": model.provider,
        "gen_ai.request.model": name,
        **turn_attributes(session, turn_id),
    }
    with _tracer.start_as_current_span(
        f"chat {name}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield span


def record_answer(span: Span, response: ModelResponse) -> None:
    """The answer's token counts and finish reason, on its `chat` span."""
    if response.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", response.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", response.usage.completion_tokens)
        span.set_attribute("keel.usage.estimated", response.usage.estimated)
    if response.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])


@contextmanager
def tool_span(tool: str, call_id: str, *, session: str, turn_id: str) -> Iterator[Span]:
    """An `execute_tool <tool>` span around one tool call."""
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "gen_ai.tool.call.id": call_id,
        **turn_attributes(session, turn_id),
    }
    with _tracer.start_as_current_span(f"execute_tool {tool}", attributes=attributes) as span:
        yield span
