"""The client examples of docs/protocols.md run as written, against the API in development
mode (no keys), as a newcomer would first run them."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.api.live import LiveApi
from tests.api.protocols.conftest import served

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocols.md"


def _examples() -> list[str]:
    """The doc's whole programs (those that name the API's address); not its fragments."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
    return [block for block in blocks if 'KEEL = "http://127.0.0.1:8000"' in block]


@pytest.fixture(scope="module")
async def dev(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveApi]:
    async with served(temporal_env, tmp_path_factory.mktemp("examples")) as api:
        yield api


@pytest.mark.parametrize("example", _examples(), ids=["mcp", "a2a"])
async def test_the_example_runs(dev: LiveApi, example: str) -> None:
    url = str(dev.http.base_url).rstrip("/")
    code = example.replace('KEEL = "http://127.0.0.1:8000"', f'KEEL = "{url}"')
    assert code != example, "the example no longer names the API's address"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    printed = out.decode()
    assert "echo: hello" in printed and "echo: and again" in printed, printed
