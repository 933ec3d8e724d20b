"""The OpenAI provider: the chat completions API, on OpenAI or any compatible server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncStream
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

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

_VENDOR = "OpenAI"
_DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class OpenAIProvider:
    """Calls `POST {base_url}/chat/completions` through the `openai` SDK.

    Args:
        config: The model; `api_key_env` defaults to `OPENAI_API_KEY`.

    Raises:
        ApplicationError: `MissingApiKey` or `MissingModel`, non-retryable.
    """

    def __init__(self, config: ModelConfig) -> None:
        self._config = config
        self._model = require_model(config)
        self._key_env = config.api_key_env or _DEFAULT_KEY_ENV
        self._api_key = read_api_key(self._key_env)

    def _client(self) -> openai.AsyncOpenAI:
        config = self._config
        return cached_client(
            client_key(config, self._key_env, self._api_key),
            lambda: openai.AsyncOpenAI(
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
            "messages": _to_openai_messages(request, names),
        }
        if request.tools:
            params["tools"] = [
                ChatCompletionFunctionToolParam(
                    type="function",
                    function={
                        "name": names.to_wire(t.name),
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                )
                for t in request.tools
            ]
        if request.response_schema is not None:
            # Native structured output; the LLM activity still validates the answer.
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_schema},
            }
        if request.model.temperature is not None:
            params["temperature"] = request.model.temperature
        if request.model.max_tokens is not None:
            # `max_tokens`, not `max_completion_tokens`: compatible servers (vLLM,
            # llama.cpp, Ollama) know the older name.
            params["max_tokens"] = request.model.max_tokens
        try:
            if on_delta is None:
                completion = await self._post(params, stream=False)
                return _from_completion(completion, names)
            return await self._stream(params, names, on_delta)
        except Exception as e:
            mapped = map_sdk_error(_VENDOR, openai, e, secret=self._api_key)
            if mapped is None:
                raise
            raise mapped from e

    async def _post(self, body: dict[str, Any], *, stream: bool) -> Any:
        """`chat.completions.create` as the SDK sends it, less its walk of the body.

        `create` transforms every message through its typed-dict schema before
        sending, which cost a fifth of a worker's CPU with 50 messages (see
        docs/performance.md); the body built here is plain JSON already.
        """
        return await self._client().post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            options={"security": {"bearer_auth": True}},
            stream=stream,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )

    async def _stream(
        self, params: dict[str, Any], names: WireNames, on_delta: OnDelta
    ) -> ModelResponse:
        stream = await self._post(
            {**params, "stream": True, "stream_options": {"include_usage": True}}, stream=True
        )
        text: list[str] = []
        calls: dict[int, _PartialCall] = {}
        # None until a usage chunk comes: some servers send none, whatever was asked.
        usage: Usage | None = None
        stop_reason: str | None = None
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens,
                        completion_tokens=chunk.usage.completion_tokens,
                    )
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.finish_reason:
                        stop_reason = choice.finish_reason
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        await on_delta(delta.content)
                    for part in delta.tool_calls or []:
                        call = calls.setdefault(part.index, _PartialCall())
                        call.id = call.id or part.id or ""
                        if part.function is not None:
                            call.name += part.function.name or ""
                            call.arguments += part.function.arguments or ""
        tool_calls = [
            ToolCall(
                id=call.id or f"call_{index}",
                name=names.from_wire(call.name),
                arguments=parse_arguments(call.arguments),
            )
            for index, call in sorted(calls.items())
        ]
        return ModelResponse(
            content="".join(text), tool_calls=tool_calls, usage=usage, stop_reason=stop_reason
        )


@dataclass
class _PartialCall:
    """A tool call whose pieces are still arriving over the stream."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def _to_openai_messages(
    request: ModelRequest, names: WireNames
) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    if request.system_prompt:
        out.append({"role": "system", "content": request.system_prompt})
    for message in request.messages:
        out.append(_to_openai_message(message, names))
    return out


def _to_openai_message(message: Message, names: WireNames) -> ChatCompletionMessageParam:
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "tool":
        # Chat completions has no error flag on tool results; say it in the text.
        content = f"Error: {message.content}" if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content}
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    calls = [
        ChatCompletionMessageFunctionToolCallParam(
            id=call.id,
            type="function",
            function={"name": names.to_wire(call.name), "arguments": json.dumps(call.arguments)},
        )
        for call in message.tool_calls
    ]
    # Null content is how the API spells "only tool calls".
    return {"role": "assistant", "content": message.content or None, "tool_calls": calls}


def _from_completion(completion: ChatCompletion, names: WireNames) -> ModelResponse:
    usage: Usage | None = None
    if completion.usage is not None:
        usage = Usage(
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
        )
    if not completion.choices:
        return ModelResponse(usage=usage)
    choice = completion.choices[0]
    tool_calls = [
        ToolCall(
            id=call.id,
            name=names.from_wire(call.function.name),
            arguments=parse_arguments(call.function.arguments),
        )
        for call in choice.message.tool_calls or []
        if call.type == "function"
    ]
    return ModelResponse(
        content=choice.message.content or "",
        tool_calls=tool_calls,
        usage=usage,
        stop_reason=choice.finish_reason,
    )
