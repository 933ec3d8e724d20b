"""The client examples of docs/protocols.md run as written against the served API."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.api.live import LiveApi
from tests.api.protocols.conftest import ADMIN

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocols.md"


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("example", _examples(), ids=["mcp", "a2a"])
async def test_the_example_runs(live: LiveApi, example: str) -> None:
    # The served stack requires keys: the example's own variables say where they go.
    url = str(live.http.base_url).rstrip("/")
    code = example.replace('KEEL = "http://127.0.0.1:8000"', f'KEEL = "{url}"')
    code = code.replace("HEADERS = {}", f'HEADERS = {{"Authorization": "Bearer {ADMIN}"}}')
    assert code != example
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    printed = out.decode()
    assert "echo: hello" in printed and "echo: and again" in printed, printed
