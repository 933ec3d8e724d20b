"""A fake LLM HTTP server speaking the OpenAI and Anthropic wire formats, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_TOKENS = re.compile(r"\S+\s*|\s+")
_SAFE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error"}
_ANTHROPIC_ERROR_TYPES |= {429: "rate_limit_error", 529: "overloaded_error"}


@dataclass
class ReceivedRequest:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    """Lower-cased header names."""
    body: dict[str, Any]


@dataclass
class _Reply:
    text: str
    tool_calls: list[dict[str, Any]]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class _Error:
    status: int
    message: str
    retry_after: float | None = None


@dataclass
class _Answer:
    """A reply made concrete for one request."""

    tokens: list[str]
    calls: list[tuple[str, str, str]]
    """(id, wire name, JSON arguments text)."""
    prompt_tokens: int
    completion_tokens: int


class _QuietServer(uvicorn.Server):
    # The test process owns SIGINT/SIGTERM; uvicorn must not take them over.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FakeLLMServer:
    """Serves `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages` (Anthropic).

    Replies come from one FIFO shared by both routes (`enqueue_reply`,
    `enqueue_error`); with nothing queued it answers "fake: <last user text>".
    Streamed text goes out one word token per chunk, `token_delay_s` apart.
    Requests the real APIs would refuse (unsafe tool names, tool results with no
    matching call, no API key) get 400/401, so tests catch bad conversions.

    Induced failures, for resilience tests: `failing_status` answers every request
    with that status until set back to None; `reply_delay_s` holds every answer back
    (past a client's timeout, say). "Connection refused" needs no server: point a
    model at `free_port()` (tests/procs.py), where nothing listens.

    Usage::

        async with FakeLLMServer() as server:
            server.enqueue_reply("hello there")
            client = AsyncOpenAI(base_url=server.openai_base_url, api_key="k")
    """

    def __init__(self, *, token_delay_s: float = 0.0, stream_usage: bool = True) -> None:
        self.token_delay_s = token_delay_s
        self.stream_usage = stream_usage
        """False: a streamed OpenAI answer sends no usage chunk, even when asked for one
        (llama-cpp-python's server does so)."""
        self.failing_status: int | None = None
        self.reply_delay_s = 0.0
        self.requests: list[ReceivedRequest] = []
        self.port = 0
        self._queue: list[_Reply | _Error] = []
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        routes = [
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/v1/messages", self._anthropic, methods=["POST"]),
        ]
        self._config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )

    @property
    def openai_base_url(self) -> str:
        """The `base_url` for `AsyncOpenAI`: `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The `base_url` for `AsyncAnthropic`: `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue_reply(
        self,
        text: str = "",
        tool_calls: list[dict[str, Any]] | None = None,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Queue the next answer.

        Args:
            text: The answer; streamed one word token per chunk, so a text of
                2,000 words streams as 2,000 chunks.
            tool_calls: Items `{"name": str, "arguments": dict | str, "id": str}`
                (`id` optional; a str `arguments` is sent verbatim, JSON or not,
                except by non-streaming Anthropic, whose `input` must be an object).
                Use wire-safe names, as a real model would.
            prompt_tokens: Reported usage; defaults to the request's word count.
            completion_tokens: Reported usage; defaults to tokens plus tool calls.
        """
        self._queue.append(_Reply(text, list(tool_calls or []), prompt_tokens, completion_tokens))

    def enqueue_error(
        self, status: int, message: str = "fake failure", retry_after: float | None = None
    ) -> None:
        """Queue an error response, in the error body shape of the route it hits.

        Args:
            status: The HTTP status.
            message: The vendor's error message.
            retry_after: Sent as the `Retry-After` header (seconds) when given.
        """
        self._queue.append(_Error(status, message, retry_after))

    def requests_for(self, model: str) -> int:
        """How many requests named `model` (the vendor model id), failed ones included."""
        return sum(1 for r in self.requests if r.body.get("model") == model)

    def reset(self) -> None:
        """Forget requests, queued replies, the token delay and `stream_usage` (for a shared
        server)."""
        self.requests.clear()
        self._queue.clear()
        self.token_delay_s = 0.0
        self.stream_usage = True
        self.failing_status = None
        self.reply_delay_s = 0.0

    async def start(self) -> None:
        """Start serving on a free port of 127.0.0.1."""
        self._server = _QuietServer(self._config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("fake LLM server exited during startup")
            await asyncio.sleep(0.005)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving; returns once the server task has ended."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    async def __aenter__(self) -> FakeLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _receive(
        self, request: Request, check: Callable[[dict[str, Any]], str | None], prefix: str
    ) -> tuple[dict[str, Any], _Answer | _Error]:
        body: dict[str, Any] = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(ReceivedRequest(request.url.path, headers, body))
        if self.reply_delay_s:
            await asyncio.sleep(self.reply_delay_s)
        if self.failing_status is not None:
            return body, _Error(self.failing_status, "induced failure")
        if not (headers.get("x-api-key") or headers.get("authorization", "").startswith("Bearer ")):
            return body, _Error(401, "no API key given")
        if problem := check(body):
            return body, _Error(400, problem)
        item = self._queue.pop(0) if self._queue else None
        if isinstance(item, _Error):
            return body, item
        messages = body["messages"]
        if item is None:
            users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
            item = _Reply("fake: " + next((t for t in reversed(users) if t), ""), [])
        calls = [
            (c.get("id") or f"{prefix}{i}", c["name"], _json_text(c.get("arguments", {})))
            for i, c in enumerate(item.tool_calls, start=1)
        ]
        tokens = _TOKENS.findall(item.text)
        words = sum(len(_text(m.get("content")).split()) for m in messages)
        prompt = item.prompt_tokens if item.prompt_tokens is not None else max(1, words)
        completion = item.completion_tokens
        completion = completion if completion is not None else len(tokens) + len(calls)
        return body, _Answer(tokens, calls, prompt, completion)

    async def _paced(self, tokens: list[str]) -> AsyncIterator[str]:
        for i, token in enumerate(tokens):
            if i and self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield token

    async def _openai(self, request: Request) -> Response:
        body, answer = await self._receive(request, _check_openai, "call_")
        if isinstance(answer, _Error):
            error = {"message": answer.message, "type": "invalid_request_error", "code": None}
            return _error_response(answer, {"error": error})
        if body.get("stream"):
            asked = (body.get("stream_options") or {}).get("include_usage", False)
            usage = asked and self.stream_usage
            return _sse(self._openai_chunks(body["model"], answer, usage))
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.tokens) or None}
        if answer.calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in answer.calls
            ]
        finish = "tool_calls" if answer.calls else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        head = _openai_head(body["model"], "chat.completion")
        return JSONResponse({**head, "choices": [choice], "usage": _openai_usage(answer)})

    async def _openai_chunks(self, model: str, answer: _Answer, usage: bool) -> AsyncIterator[str]:
        head = _openai_head(model, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        async for token in self._paced(answer.tokens):
            yield chunk({"content": token})
        for index, (call_id, name, arguments) in enumerate(answer.calls):
            # Like the real API: id and name once, then the arguments in pieces.
            function = {"name": name, "arguments": ""}
            yield chunk({"tool_calls": [{"index": index, "id": call_id, "function": function}]})
            for piece in _halves(arguments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if answer.calls else "stop")
        if usage:
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': _openai_usage(answer)})}\n\n"
        yield "data: [DONE]\n\n"

    async def _anthropic(self, request: Request) -> Response:
        body, answer = await self._receive(request, _check_anthropic, "toolu_")
        if isinstance(answer, _Error):
            kind = _ANTHROPIC_ERROR_TYPES.get(answer.status, "api_error")
            error = {"type": kind, "message": answer.message}
            return _error_response(answer, {"type": "error", "error": error})
        if body.get("stream"):
            return _sse(self._anthropic_events(body["model"], answer))
        content: list[dict[str, Any]] = []
        if answer.tokens:
            content.append({"type": "text", "text": "".join(answer.tokens)})
        for call_id, name, arguments in answer.calls:
            block = {"type": "tool_use", "id": call_id, "name": name}
            content.append({**block, "input": json.loads(arguments)})
        usage = {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens}
        stop = "tool_use" if answer.calls else "end_turn"
        message = _anthropic_head(body["model"], stop)
        return JSONResponse({**message, "content": content, "usage": usage})

    async def _anthropic_events(self, model: str, answer: _Answer) -> AsyncIterator[str]:
        def event(kind: str, **data: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        usage = {"input_tokens": answer.prompt_tokens, "output_tokens": 1}
        yield event("message_start", message={**_anthropic_head(model, None), "usage": usage})
        index = 0
        if answer.tokens:
            yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            async for token in self._paced(answer.tokens):
                delta = {"type": "text_delta", "text": token}
                yield event("content_block_delta", index=0, delta=delta)
            yield event("content_block_stop", index=0)
            index = 1
        for call_id, name, arguments in answer.calls:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            yield event("content_block_start", index=index, content_block=block)
            for piece in _halves(arguments):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield event("content_block_delta", index=index, delta=delta)
            yield event("content_block_stop", index=index)
            index += 1
        end = {"stop_reason": "tool_use" if answer.calls else "end_turn", "stop_sequence": None}
        yield event("message_delta", delta=end, usage={"output_tokens": answer.completion_tokens})
        yield event("message_stop")


def _text(content: Any) -> str:
    """A message's text, whether content is a string or a list of parts or blocks."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _json_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _halves(text: str) -> tuple[str, str]:
    return text[: len(text) // 2], text[len(text) // 2 :]


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream")


def _error_response(error: _Error, body: dict[str, Any]) -> JSONResponse:
    headers = {} if error.retry_after is None else {"retry-after": f"{error.retry_after:g}"}
    return JSONResponse(body, status_code=error.status, headers=headers)


def _openai_head(model: str, kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": kind, "created": 0, "model": model}


def _openai_usage(answer: _Answer) -> dict[str, int]:
    p, c = answer.prompt_tokens, answer.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _anthropic_head(model: str, stop: str | None) -> dict[str, Any]:
    head = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model}
    return {**head, "content": [], "stop_reason": stop, "stop_sequence": None}


def _check_openai(body: dict[str, Any]) -> str | None:
    """Why the real chat completions API would answer 400, or None."""
    for tool in body.get("tools") or []:
        if not _SAFE_NAME.match(tool["function"]["name"]):
            return f"Invalid 'tools.function.name': {tool['function']['name']!r}"
    called: set[str] = set()
    for message in body.get("messages") or []:
        for call in message.get("tool_calls") or []:
            function = call["function"]
            if not _SAFE_NAME.match(function["name"]) or not isinstance(function["arguments"], str):
                return f"Invalid tool call in an assistant message: {call!r}"
            called.add(call["id"])
        if message.get("role") == "tool" and message.get("tool_call_id") not in called:
            return "Messages with role 'tool' must answer a preceding 'tool_calls' entry."
    return None if body.get("messages") else "'messages' must not be empty"


def _check_anthropic(body: dict[str, Any]) -> str | None:
    """Why the real messages API would answer 400, or None."""
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if sampling := sorted({"temperature", "top_p", "top_k"} & body.keys()):
        return f"{sampling[0]}: Extra inputs are not permitted"  # as API version 2026-10-21
    for tool in body.get("tools") or []:
        if not _SAFE_NAME.match(tool["name"]):
            return f"tools.name: String should match '^[a-zA-Z0-9_-]{{1,64}}$': {tool['name']!r}"
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        return "messages: the first message must use the 'user' role"
    used: set[str] = set()
    for i, message in enumerate(messages):
        if i and messages[i - 1].get("role") == message.get("role"):
            return "messages: roles must alternate between 'user' and 'assistant'"
        blocks = message["content"] if isinstance(message["content"], list) else []
        for block in blocks:
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in used:
                return "messages: tool_result block(s) provided without a matching tool_use"
            if block.get("type") == "text" and not block.get("text"):
                return "messages: text content blocks must be non-empty"
        used = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None
