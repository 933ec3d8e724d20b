"""Replay every committed history: a change that breaks determinism fails here, not in production.

Each folder under `tests/histories/` is a corpus recorded from one build by
`python -m tests.histories.record --label NAME`, and is kept forever: a build
that replays them all can take over sessions that older builds started. See
docs/changing-workflows.md.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from keel.session import session_workflow_id
from workflows import SessionWorkflow

pytestmark = pytest.mark.timeout(60)

HISTORIES = Path(__file__).parent.parent / "histories"
HISTORY_FILES = sorted(HISTORIES.glob("*/*.json"))

WAVE1 = frozenset({"plain_turn", "tool_turn", "approval_turn", "continue_as_new"})
"""The first corpus: four paths, recorded before the recorder drove sessions through the API."""
PATHS_2026_12 = frozenset(
    {
        "sync_chat",
        "streamed_turn",
        "tool_turn",
        "approval_approve",
        "approval_reject",
        "approval_revise",
        "approval_signal",
        "approval_timeout",
        "delegation",
        "delegation.specialist",
        "ask_session",
        "ask_session.asked",
        "publish",
        "publish.subscriber",
        "memory",
        "continue_as_new",
        "continue_as_new.second_run",
        "close",
    }
)
"""Every path the recorder drove on 2026-12-02: later corpora hold at least these files."""
HARDENED = PATHS_2026_12 | {"failed_turn"}
"""The session core after issue 11: the same paths, and a turn whose model call fails.
The corpus of issue 12 holds them too: model calls on the session's own queue, and
`send_message` answering with `turn.started`; and later, tool calls on that queue too."""
CANCEL = HARDENED | {"cancelled_turn", "interrupted_turn"}
"""Turn control (issue 17): turns cancelled at an approval, in the queue and mid model call
(rolled back), and one interrupted mid tool call under `on_busy: rollback`."""
FALLBACK = CANCEL | {"fallback_turn"}
"""Provider resilience (issue 16): a model that fails past its attempts, then its fallback."""
PLANNER = CANCEL | {"planner", "planner.step"}
"""The planner (issue 17): a gated plan rejected with feedback, the next approved, two
steps side by side and one after both, each a child session."""
USAGE = FALLBACK | PLANNER
"""Usage and cost (issue 15): the paths of both corpora before it; the delegation and the
plan's steps record `keel-usage-rollup-1`."""
KEPT = {
    "2026-11-wave1": WAVE1,
    "2026-12-02-main-2273a4c": PATHS_2026_12,
    "2026-12-02-hardened-ca772f9": HARDENED,
    "2026-12-03-perf-446d4ef": HARDENED,
    "2026-12-04-mirror-9c0f448": HARDENED,
    "2026-12-04-console-api-39f2fc9": HARDENED,
    "2026-12-04-tools-955977f": HARDENED,
    "2026-12-04-pending-if-started-684cf2d": HARDENED,
    "2026-12-04-baseline-5487641": HARDENED,
    "2026-12-07-cancel-7bc477f": CANCEL,
    "2026-12-07-fallback-8b18110": FALLBACK,
    "2026-12-07-planner-b6799ff": PLANNER,
    "2026-12-07-usage-d71c49d": USAGE,
}
"""Each committed corpus, oldest first, and the files it must keep. Never remove one:
add a new corpus here with its files (those of the newest one, and any new path)."""


def _workflow_id(exported: dict[str, Any]) -> str:
    """The workflow id the recorder wrote beside the events, or (the first corpus, which
    predates that key) the id of the session its start input names."""
    if "workflowId" in exported:
        workflow_id: str = exported["workflowId"]
        return workflow_id
    started = exported["events"][0]["workflowExecutionStartedEventAttributes"]
    start = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    return session_workflow_id(start["tenant"], start["session_id"])


def _history(path: Path) -> WorkflowHistory:
    exported = json.loads(path.read_text())
    return WorkflowHistory.from_json(_workflow_id(exported), exported)


@pytest.mark.parametrize(
    "path", HISTORY_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORY_FILES]
)
async def test_a_recorded_history_replays_with_todays_code(path: Path) -> None:
    history = _history(path)
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)  # raises on a nondeterminism error


def test_the_corpus_keeps_every_folder_and_every_path() -> None:
    held: dict[str, set[str]] = {}
    for path in HISTORY_FILES:
        held.setdefault(path.parent.name, set()).add(path.stem)
    for folder in KEPT:
        assert folder in held, f"the corpus {folder} is gone"
    newest = list(KEPT.values())[-1]
    for folder, stems in held.items():
        # A new recording may add paths, never drop one.
        wanted = KEPT.get(folder, newest)
        assert wanted <= stems, f"{folder} lacks {sorted(wanted - stems)}"
