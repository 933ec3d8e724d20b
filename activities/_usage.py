"""A model call's tokens: the provider's count, else Keel's estimate; and what they cost.

Some servers send no usage at all: llama-cpp-python's, when it streams, ignores
`stream_options.include_usage`. A turn must never report a silent 0 for them, so the
LLM activity counts the tokens itself and marks the usage `estimated`. This runs in the
activity, never in workflow code: counting reads the whole prompt, which history never
holds.
"""

from __future__ import annotations

import json
import math

from activities.providers import ModelRequest, ModelResponse
from keel.messages import Message, Usage

CHARS_PER_TOKEN = 4
"""English text runs about four characters a token in the BPE vocabularies of GPT, Llama
and Qwen models alike; no tokenizer ships with Keel, so every estimate uses this."""
MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens a chat template adds around each message (role markers, separators)."""


def text_tokens(text: str) -> int:
    """About how many tokens `text` takes (0 for no text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _message_tokens(message: Message) -> int:
    calls = [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    body = message.content + (json.dumps(calls) if calls else "")
    return MESSAGE_OVERHEAD_TOKENS + text_tokens(body)


def estimate_usage(request: ModelRequest, response: ModelResponse) -> Usage:
    """Keel's count of a call's tokens: the prompt it sent and the answer it got.

    Args:
        request: Counted over the system prompt, every message (tool calls included)
            and the tools' schemas, as the server renders them all into the prompt.
        response: Counted over its text and tool calls.

    Returns:
        The counts, `estimated`; at least 1 completion token, as the model answered.
    """
    prompt = sum(_message_tokens(m) for m in request.messages)
    if request.system_prompt:
        prompt += MESSAGE_OVERHEAD_TOKENS + text_tokens(request.system_prompt)
    if request.tools:
        prompt += text_tokens(json.dumps([t.model_dump() for t in request.tools]))
    calls = [{"name": c.name, "arguments": c.arguments} for c in response.tool_calls]
    completion = text_tokens(response.content + (json.dumps(calls) if calls else ""))
    return Usage(prompt_tokens=prompt, completion_tokens=max(1, completion), estimated=True)


def counted(request: ModelRequest, response: ModelResponse) -> ModelResponse:
    """`response` with usage: the provider's when it sent one, else `estimate_usage`'s.

    A cached answer spent no tokens: it is never estimated (its usage is 0).
    """
    if response.usage is not None:
        return response
    if response.cached:
        return response.model_copy(update={"usage": Usage()})
    return response.model_copy(update={"usage": estimate_usage(request, response)})


def priced(request: ModelRequest, usage: Usage) -> Usage:
    """`usage` with `cost_usd` at the model's `pricing` (unchanged without one)."""
    pricing = request.model.pricing
    return usage if pricing is None else pricing.priced(usage)
