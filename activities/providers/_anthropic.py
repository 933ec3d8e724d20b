"""The Anthropic provider: the messages API, on Anthropic or a compatible proxy."""

from __future__ import annotations

from typing import Any

import anthropic
from anthropic.types import (
    AssistantMessageParam,
    ContentBlockParam,
    MessageParam,
    RawMessageStreamEvent,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    UserMessageParam,
)
from anthropic.types import Message as AnthropicMessage
from anthropic.types import Usage as AnthropicUsage

from activities.providers._base import ModelRequest, ModelResponse, OnDelta
from activities.providers._clients import (
    cached_client,
    client_key,
    read_api_key,
    require_model,
)
from activities.providers._errors import map_sdk_error
from activities.providers._wire import WireNames, parse_arguments, wire_names_for
from keel.formation import ModelConfig
from keel.messages import Message, ToolCall, Usage

_VENDOR = "Anthropic"
_DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
_DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider:
    """Calls `POST {base_url}/v1/messages` through the `anthropic` SDK.

    Args:
        config: The model; `api_key_env` defaults to `ANTHROPIC_API_KEY`.

    Raises:
        ApplicationError: `MissingApiKey` or `MissingModel`, non-retryable.
    """

    def __init__(self, config: ModelConfig) -> None:
        self._config = config
        self._model = require_model(config)
        self._key_env = config.api_key_env or _DEFAULT_KEY_ENV
        self._api_key = read_api_key(self._key_env)

    def _client(self) -> anthropic.AsyncAnthropic:
        config = self._config
        return cached_client(
            client_key(config, self._key_env, self._api_key),
            lambda: anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=config.base_url,
                timeout=config.timeout_s,
                # Temporal's retry policy decides; SDK retries would hide attempts from it.
                max_retries=0,
            ),
        )

    async def complete(
        self, request: ModelRequest, *, on_delta: OnDelta | None = None
    ) -> ModelResponse:
        """Call the model; stream text to `on_delta` when given.

        Args:
            request: Transcript, tools and model settings.
            on_delta: Awaited with each text piece as it arrives.

        Returns:
            The whole answer, with tool names mapped back to Keel names.

        Raises:
            ApplicationError: Vendor failures, mapped by `map_sdk_error`.
        """
        names = wire_names_for(request)
        params: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.model.max_tokens or _DEFAULT_MAX_TOKENS,
            "messages": _to_anthropic_messages(request.messages, names),
        }
        if request.system_prompt:
            params["system"] = request.system_prompt
        if request.tools:
            params["tools"] = [
                ToolParam(
                    name=names.to_wire(t.name),
                    description=t.description,
                    input_schema=t.parameters,
                )
                for t in request.tools
            ]
        # No `temperature`: API version 2026-10-21 (sent by SDK 2.x) removed the
        # sampling parameters and answers 400 to any of them, so it is ignored here.
        try:
            if on_delta is None:
                message = await self._client().messages.create(**params)
                return _from_message(message, names)
            return await self._stream(params, names, on_delta)
        except Exception as e:
            mapped = map_sdk_error(_VENDOR, anthropic, e, secret=self._api_key)
            if mapped is None:
                raise
            raise mapped from e

    async def _stream(
        self, params: dict[str, Any], names: WireNames, on_delta: OnDelta
    ) -> ModelResponse:
        # The raw event stream rather than `messages.stream()`: that helper raises on
        # malformed tool JSON, where Keel keeps it as `{"_raw": ...}`.
        stream = await self._client().messages.create(**params, stream=True)
        state = _StreamState()
        async with stream:
            async for event in stream:
                await state.feed(event, on_delta)
        return state.response(names)


class _StreamState:
    """What a streamed message has said so far."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tools: dict[int, tuple[str, str, list[str]]] = {}
        """Content block index → (tool_use id, wire name, JSON pieces)."""
        self.prompt_parts = [0, 0, 0]
        """Input, cache-write and cache-read tokens, as in `_prompt_parts`."""
        self.completion_tokens = 0
        self.stop_reason: str | None = None

    async def feed(self, event: RawMessageStreamEvent, on_delta: OnDelta) -> None:
        """Fold one stream event in, passing text on to `on_delta`.

        Args:
            event: The next event from the SDK's raw stream.
            on_delta: Awaited with each text piece.
        """
        if event.type == "message_start":
            self.prompt_parts = _prompt_parts(event.message.usage)
            self.completion_tokens = event.message.usage.output_tokens
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = (block.id, block.name, [])
            elif block.type == "text" and block.text:
                self.text.append(block.text)
                await on_delta(block.text)
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                self.text.append(delta.text)
                await on_delta(delta.text)
            elif delta.type == "input_json_delta" and event.index in self.tools:
                self.tools[event.index][2].append(delta.partial_json)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason
            # Counts on message_delta are cumulative totals, not increments; the
            # optional ones are left out when unchanged.
            late = event.usage
            self.completion_tokens = late.output_tokens
            parts = [
                late.input_tokens,
                late.cache_creation_input_tokens,
                late.cache_read_input_tokens,
            ]
            self.prompt_parts = [
                old if new is None else new
                for old, new in zip(self.prompt_parts, parts, strict=True)
            ]

    def response(self, names: WireNames) -> ModelResponse:
        """The finished answer.

        Args:
            names: Maps tool names back to Keel names.

        Returns:
            Text, tool calls in block order, usage and stop reason.
        """
        calls = [
            ToolCall(id=tid, name=names.from_wire(name), arguments=parse_arguments("".join(js)))
            for _, (tid, name, js) in sorted(self.tools.items())
        ]
        return ModelResponse(
            content="".join(self.text),
            tool_calls=calls,
            usage=Usage(
                prompt_tokens=sum(self.prompt_parts), completion_tokens=self.completion_tokens
            ),
            stop_reason=self.stop_reason,
        )


def _prompt_parts(usage: AnthropicUsage) -> list[int]:
    # Cached prompt tokens are reported apart from `input_tokens`; the prompt the
    # model read is the sum of all three.
    cached = [usage.cache_creation_input_tokens, usage.cache_read_input_tokens]
    return [usage.input_tokens, *(part or 0 for part in cached)]


def _to_anthropic_messages(messages: list[Message], names: WireNames) -> list[MessageParam]:
    """Convert a Keel transcript, merging runs of one role.

    The API wants user and assistant turns to alternate, so consecutive tool
    results (and any user text right after them) share one user message.
    """
    turns: list[tuple[bool, list[ContentBlockParam]]] = []
    for message in messages:
        is_assistant = message.role == "assistant"
        blocks = _blocks(message, names)
        if not blocks:
            continue
        if turns and turns[-1][0] == is_assistant:
            turns[-1][1].extend(blocks)
        else:
            turns.append((is_assistant, blocks))
    return [
        AssistantMessageParam(role="assistant", content=blocks)
        if is_assistant
        else UserMessageParam(role="user", content=blocks)
        for is_assistant, blocks in turns
    ]


def _blocks(message: Message, names: WireNames) -> list[ContentBlockParam]:
    if message.role == "tool":
        result = ToolResultBlockParam(
            type="tool_result", tool_use_id=message.tool_call_id or "", content=message.content
        )
        if message.is_error:
            result["is_error"] = True
        return [result]
    # The API rejects empty text blocks.
    blocks: list[ContentBlockParam] = (
        [TextBlockParam(type="text", text=message.content)] if message.content else []
    )
    for call in message.tool_calls:
        blocks.append(
            ToolUseBlockParam(
                type="tool_use", id=call.id, name=names.to_wire(call.name), input=call.arguments
            )
        )
    return blocks


def _from_message(message: AnthropicMessage, names: WireNames) -> ModelResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            arguments = block.input if isinstance(block.input, dict) else {"_raw": str(block.input)}
            calls.append(
                ToolCall(id=block.id, name=names.from_wire(block.name), arguments=arguments)
            )
    return ModelResponse(
        content="".join(text),
        tool_calls=calls,
        usage=Usage(
            prompt_tokens=sum(_prompt_parts(message.usage)),
            completion_tokens=message.usage.output_tokens,
        ),
        stop_reason=message.stop_reason,
    )
