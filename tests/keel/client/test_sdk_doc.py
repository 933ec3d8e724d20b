"""docs/sdk.md runs as written: each example against `examples/sdk.yaml`, its tests with pytest."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel.client import AsyncKeel

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "sdk.md"
DOC_URL = "http://127.0.0.1:8000"
"""Where the examples expect `keel dev --formation examples/sdk.yaml`."""
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_TEST_FILE = re.compile(r"^# (test_\w+\.py)\n")


def _examples() -> list[pytest.ParameterSet]:
    """The doc's scripts (not its test files), each named after the section it is in."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    for i, block in enumerate(_BLOCK.finditer(text)):
        if _TEST_FILE.match(block.group(1)):
            continue
        heading = re.findall(r"^## (.+)$", text[: block.start()], re.MULTILINE)[-1]
        name = re.sub(r"\W+", "-", heading.lower()).strip("-")
        found.append(pytest.param(block.group(1), id=f"{i}-{name}"))
    return found


@pytest.fixture(scope="module")
async def dev_url() -> AsyncIterator[str]:
    """What `keel dev --formation examples/sdk.yaml` serves, embedded."""
    async with AsyncKeel.embedded(formation=ROOT / "examples" / "sdk.yaml") as keel:
        yield keel.base_url


@pytest.mark.parametrize("code", _examples())
async def test_each_example_runs(code: str, dev_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples name `examples/sdk.yaml` from the repository root
    compiled = compile(code.replace(DOC_URL, dev_url), str(DOC), "exec")
    # On a thread: the examples block, or run an event loop of their own.
    await asyncio.to_thread(exec, compiled, {"__name__": "__main__"})


async def test_the_pytest_examples_pass(tmp_path: Path) -> None:
    files = []
    for block in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        if match := _TEST_FILE.match(block):
            (tmp_path / match.group(1)).write_text(block)
            files.append(match.group(1))
    assert len(files) == 2
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not this repository's settings
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(tmp_path / "pytest.ini"),
        "--rootdir",
        str(tmp_path),
        *(str(tmp_path / f) for f in files),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 100)
    assert process.returncode == 0, out.decode()
    assert b"3 passed" in out
