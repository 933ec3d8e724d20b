"""Long-lived MCP client sessions, one per server per worker process, reconnected when lost."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import httpx2
import mcp.types as mt
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from pydantic_core import to_json

from keel.formation import McpServerConfig
from keel.logging import get_logger

__all__ = ["IDEMPOTENCY_META_KEY", "McpPool", "McpUnavailable", "result_text"]

T = TypeVar("T")

IDEMPOTENCY_META_KEY = "keel/idempotency-key"
"""The request `_meta` key that carries a call's idempotency key to MCP servers."""
LIST_TTL_S = 300.0
CONNECT_TIMEOUT_S = 30.0
CLOSE_GRACE_S = 10.0
"""How long a closing session may take to shut its server down before it is cancelled."""
_LIST_PAGES = 100
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # the mcp SDK's defaults; read covers SSE waits
log = get_logger(__name__)


class McpUnavailable(Exception):
    """The server cannot be reached, or lost the connection again right after a reconnect."""


class _Session:
    """One connected MCP client, held open by a task of its own.

    The mcp transports are anyio context managers whose cancel scopes must be
    entered and exited by the same task. Activities run in short-lived tasks,
    so a dedicated owner task enters the client and waits until it is told to
    close; callers in any task use the client meanwhile.
    """

    def __init__(self, config: McpServerConfig, on_tools_changed: Callable[[], None]) -> None:
        self.config = config
        self._on_tools_changed = on_tools_changed
        self.client: Client | None = None
        self.lost = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Connected, and no call has seen the connection close."""
        task = self._task
        return not self.lost and self.client is not None and task is not None and not task.done()

    async def open(self, timeout_s: float) -> None:
        """Connect; raises what connecting raised, or `TimeoutError`."""
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        # A fresh context: the owner outlives the activity that happened to open
        # it, and must not carry that activity's Temporal and log context along.
        self._task = asyncio.create_task(
            self._own(ready), name=f"mcp:{self.config.name}", context=contextvars.Context()
        )
        try:
            async with asyncio.timeout(timeout_s):
                self.client = await asyncio.shield(ready)
        except BaseException:
            await self.close()
            raise

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    _client(self.config, stack, self._on_message)
                )
                ready.set_result(client)
                watching = asyncio.create_task(self._watch_tools(client))
                try:
                    await self._stop.wait()
                finally:
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
        except Exception as e:
            if not ready.done():
                ready.set_exception(e)
            else:
                # E.g. an HTTP transport whose server vanished: it tears itself down.
                log.warning(
                    "MCP session ended", server=self.config.name, error=_reason(e, self.config)
                )
        finally:
            self.lost = True
            if not ready.done():
                ready.cancel()

    async def _watch_tools(self, client: Client) -> None:
        """Follow the server's tool list changes (`subscriptions/listen`, MCP 2026-07-28 on).

        A server of an earlier protocol sends `notifications/tools/list_changed` instead,
        which `_on_message` receives; one that never changes its tools sends neither.
        """
        try:
            async with client.listen(tools_list_changed=True) as changes:
                async for _ in changes:
                    log.info("MCP tools changed", server=self.config.name)
                    self._on_tools_changed()
        except ListenNotSupportedError:
            return
        except (MCPError, SubscriptionLost, TimeoutError) as e:
            # The list's time-to-live still bounds how stale it gets.
            log.info("MCP tool changes not followed", server=self.config.name, error=str(e))

    async def _on_message(self, message: IncomingMessage) -> None:
        """A server's notification: a changed tool list makes the cached one stale."""
        if isinstance(message, mt.ToolListChangedNotification):
            log.info("MCP tools changed", server=self.config.name)
            self._on_tools_changed()

    async def close(self) -> None:
        """Disconnect (a stdio server is stopped); safe to call more than once."""
        self.lost = True
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        if self.client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await asyncio.shield(task)
        if not task.done():
            # Still connecting, or stuck shutting down: the transport's own
            # shielded clean-up still stops a stdio server.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _client(
    config: McpServerConfig,
    stack: contextlib.AsyncExitStack,
    on_message: MessageHandlerFnT,
) -> Client:
    if config.transport == "stdio":
        assert config.command is not None  # the formation requires it for stdio
        # Only the variables the mcp SDK deems safe (PATH, HOME, …) plus `env`
        # reach the server: the worker's secrets do not.
        params = StdioServerParameters(command=config.command, args=config.args, env=config.env)
        return Client(params, message_handler=on_message)
    assert config.url is not None  # the formation requires it for http
    http = httpx2.AsyncClient(headers=config.headers, timeout=_HTTP_TIMEOUT)
    stack.push_async_callback(http.aclose)
    return Client(streamable_http_client(config.url, http_client=http), message_handler=on_message)


class McpPool:
    """Long-lived sessions to the formation's MCP servers, shared by all calls of a process.

    A session opens on first use, is reused by concurrent calls, and is replaced
    when a call finds its connection closed (the server process died, the HTTP
    server went away): that call is retried once on the new session. Tool lists
    are cached for `list_ttl_s`. Call `aclose()` when the worker stops.

    Args:
        servers: The formation's `mcp_servers`.
        list_ttl_s: How long a server's tool list is reused before it is fetched again.
        connect_timeout_s: Time limit for starting and connecting to a server.
    """

    def __init__(
        self,
        servers: Sequence[McpServerConfig],
        *,
        list_ttl_s: float = LIST_TTL_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.configs = {server.name: server for server in servers}
        self._list_ttl_s = list_ttl_s
        self._connect_timeout_s = connect_timeout_s
        self._sessions: dict[str, _Session] = {}
        self._locks = {name: asyncio.Lock() for name in self.configs}
        self._listed: dict[str, tuple[float, list[mt.Tool]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def list_tools(self, server: str, *, refresh: bool = False) -> list[mt.Tool]:
        """The server's tools, from the cache unless it is older than the TTL.

        Raises:
            McpUnavailable: The server cannot be reached.
            MCPError: The server refused the request.
        """
        cached = self._listed.get(server)
        if cached and not refresh and time.monotonic() < cached[0]:
            return cached[1]
        tools = await self._run(server, _list_all)
        self._listed[server] = (time.monotonic() + self._list_ttl_s, tools)
        return tools

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> mt.CallToolResult:
        """Call a tool; the idempotency key travels in the request's `_meta`.

        Args:
            server: The server's name in the formation.
            tool: The tool's name on that server.
            arguments: The tool's arguments.
            idempotency_key: Sent as `_meta["keel/idempotency-key"]`.
            timeout_s: Time limit for the answer (not for connecting); the server
                is sent a cancellation when it runs out.

        Raises:
            McpUnavailable: The server cannot be reached.
            MCPError: The server answered with a protocol error (unknown tool, …),
                or `REQUEST_TIMEOUT`.
        """
        meta: mt.RequestParamsMeta | None = None
        if idempotency_key:
            meta = cast(mt.RequestParamsMeta, {IDEMPOTENCY_META_KEY: idempotency_key})
        return await self._run(
            server,
            lambda c: c.call_tool(tool, arguments, read_timeout_seconds=timeout_s, meta=meta),
        )

    async def aclose(self) -> None:
        """Close every session and stop every stdio server."""
        self._closed = True
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), *self._closing)

    async def _run(self, server: str, op: Callable[[Client], Awaitable[T]]) -> T:
        for attempt in (1, 2):
            session = await self._session(server)
            assert session.client is not None
            try:
                return await op(session.client)
            except MCPError as e:
                if e.code != mt.CONNECTION_CLOSED:
                    raise
                self._retire(session)
                if attempt == 2:
                    raise McpUnavailable(f"MCP server {server!r} closed the connection") from None
                log.warning("MCP session lost; reconnecting", server=server)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _session(self, server: str) -> _Session:
        if self._closed:
            raise McpUnavailable("the worker is shutting down")
        session = self._sessions.get(server)
        if session is not None and session.alive:
            return session
        async with self._locks[server]:  # one connect per server, however many callers wait
            session = self._sessions.get(server)
            if session is not None and session.alive:
                return session
            if session is not None:
                self._retire(session)
            config = self.configs[server]
            # Patterns (`server.*`) resolve from the list: a changed one is fetched anew.
            session = _Session(config, on_tools_changed=lambda: self._forget_list(server))
            started = time.perf_counter()
            try:
                await session.open(self._connect_timeout_s)
            except Exception as e:
                reason = "timed out" if isinstance(e, TimeoutError) else _reason(e, config)
                raise McpUnavailable(f"cannot connect to MCP server {server!r}: {reason}") from None
            if self._closed:  # aclose() ran while this session was connecting
                await session.close()
                raise McpUnavailable("the worker is shutting down")
            self._sessions[server] = session
            log.info(
                "MCP session opened",
                server=server,
                transport=config.transport,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return session

    def _forget_list(self, server: str) -> None:
        self._listed.pop(server, None)

    def _retire(self, session: _Session) -> None:
        """Forget a lost session and close it in the background (`aclose` waits for it)."""
        if self._sessions.get(session.config.name) is session:
            del self._sessions[session.config.name]
        session.lost = True
        task = asyncio.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _list_all(client: Client) -> list[mt.Tool]:
    tools: list[mt.Tool] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):  # a server whose cursor never ends cannot hang us
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _reason(error: BaseException, config: McpServerConfig) -> str:
    """The innermost error as `Type: message`, with the server's secrets blanked out."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    # Header and env values may be credentials, and a URL may embed one.
    secrets = [*config.headers.values(), *config.env.values(), config.url or ""]
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text


def result_text(result: mt.CallToolResult) -> str:
    """A tool result as text for the model: text as is, other content summarised."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        return to_json(result.structured_content).decode()
    return "\n".join(parts)


def _block_text(block: mt.ContentBlock) -> str:
    if isinstance(block, mt.TextContent):
        return block.text
    if isinstance(block, mt.ImageContent | mt.AudioContent):
        return f"[{block.mime_type} {_decoded_size(block.data)} bytes]"
    if isinstance(block, mt.ResourceLink):
        return f"[resource {block.uri} ({block.name})]"
    resource = block.resource
    if isinstance(resource, mt.TextResourceContents):
        return resource.text
    kind = resource.mime_type or "binary"
    return f"[resource {resource.uri}: {kind} {_decoded_size(resource.blob)} bytes]"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)
