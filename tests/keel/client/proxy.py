"""A TCP proxy in front of the API that tests cut, to drop connections for real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Proxy:
    """Forwards 127.0.0.1:`port` to the upstream port, byte for byte.

    `cut()` closes every open connection, as a network failure would; with
    `swallow` set, a connection whose answer starts coming back is closed instead
    of passing it on, as when an answer is lost after the API has acted.
    """

    upstream: int
    port: int = 0
    swallow: int = 0
    """Answers still to swallow."""
    requests: list[bytes] = field(default_factory=list)
    """The first bytes each connection sent: its request line and headers."""
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Close every connection now (the client sees it break mid-stream)."""
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._open |= {writer, up_writer}
        first = True

        async def upward() -> None:
            nonlocal first
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    if first:
                        self.requests.append(data)
                        first = False
                    up_writer.write(data)
                    await up_writer.drain()

        async def downward() -> None:
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    if self.swallow > 0:
                        self.swallow -= 1
                        return
                    writer.write(data)
                    await writer.drain()

        pumps = [asyncio.create_task(upward()), asyncio.create_task(downward())]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for end in (writer, up_writer):
            self._open.discard(end)
            end.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[Proxy]:
    """A proxy to the API at `url` (`http://127.0.0.1:PORT`) for the block."""
    proxy = Proxy(upstream=int(url.rsplit(":", 1)[1]))
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
        proxy.cut()
