"""The benchmark's model: the tests' fake OpenAI server, answering at once, in its own process.

`python -m bench.fake_llm PORT_FILE` serves until killed and writes its port to
PORT_FILE. A last user message containing `[[tool]]` gets a call of the tool
`lookup` first (then, with the tool's result in the transcript, a text answer),
so tool turns need no per-turn set-up from the benchmark.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from tests.fakes.llm_server import FakeLLMServer

TOOL_MARK = "[[tool]]"


class BenchLLM(FakeLLMServer):
    """Answers immediately; asks for `lookup` when the last message is a `[[tool]]` user message."""

    async def _receive(
        self, request: Request, check: Callable[[dict[str, Any]], str | None], prefix: str
    ) -> tuple[dict[str, Any], Any]:
        body = await request.json()
        last = (body.get("messages") or [{}])[-1]
        if last.get("role") == "user" and TOOL_MARK in str(last.get("content")):
            self.enqueue_reply(tool_calls=[{"name": "lookup", "arguments": {"id": 7}}])
        # No await between queuing and the parent popping it: concurrent requests cannot interleave.
        answer = await super()._receive(request, check, prefix)
        self.requests.clear()  # the tests keep every request; a benchmark must not
        return answer


async def serve(port_file: Path) -> None:
    """Serve until cancelled, after writing the port to `port_file`."""
    async with BenchLLM() as server:
        await asyncio.to_thread(port_file.write_text, str(server.port))
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
