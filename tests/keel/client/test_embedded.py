"""`AsyncKeel.embedded()` and `Keel.embedded()`: Keel inside the test process, as in docs/sdk.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from keel.client import AsyncKeel, Keel

pytestmark = pytest.mark.timeout(90)
FORMATION = """\
models:
  default: {provider: scripted}
agents:
  - {name: assistant, tools: [lookup]}
python_tools: [tests.fakes.tools]
approvals:
  tools: {lookup: always}
"""


@pytest.fixture(scope="module")
def formation_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("embedded") / "formation.yaml"
    path.write_text(FORMATION)
    return path


@pytest.fixture(scope="module")
async def keel(formation_file: Path) -> AsyncIterator[AsyncKeel]:
    async with AsyncKeel.embedded(formation=formation_file) as client:
        yield client


async def test_a_durable_session_runs_in_the_process(keel: AsyncKeel) -> None:
    session = await keel.sessions.create()
    answer = await keel.chat("hello", session_id=session.id)
    assert answer.message and answer.message.content == "echo: hello"
    async with keel.stream('[[call lookup {"invoice": 3}]]', session_id=session.id) as events:
        async for requested in events:
            if requested.type == "approval.requested":
                break  # the turn waits for a person
    await keel.approvals.decide(session.id, requested.data["approval_id"], "approve")
    turn = requested.turn_id
    assert turn is not None
    rest = [e async for e in keel.events(session.id, after=requested.offset, turn_id=turn)]
    assert [e.type for e in rest if e.offset is not None][-1] == "turn.completed"
    result = next(e for e in rest if e.type == "tool.result")
    assert result.data["glimpse"] == "invoice 3: 40 EUR"
    assert [m.role for m in (await keel.sessions.get(session.id)).messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_a_session_outlives_a_restart_and_everything_stops_on_an_error(
    formation_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="boom"), Keel.embedded(formation_file, tmp_path) as keel:
        session = keel.sessions.create()
        keel.chat("remember me", session_id=session.id)
        url = keel.base_url
        temporal = psutil.Process(int((tmp_path / "temporal.pid").read_text()))
        raise RuntimeError("boom")
    assert not temporal.is_running()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    with Keel.embedded(formation_file, tmp_path) as keel:  # the same data: the same session
        keel.chat("and me", session_id=session.id)
        messages = keel.sessions.get(session.id).messages
    assert [m.content for m in messages] == [
        "remember me",
        "echo: remember me",
        "and me",
        "echo: and me",
    ]
