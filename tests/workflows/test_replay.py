"""Replay committed histories: a change that breaks determinism fails here, not in production.

The histories are recorded by `python -m tests.histories.record`; see that file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows import SessionWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"
SCENARIOS = ["plain_turn", "tool_turn", "approval_turn", "continue_as_new"]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_recorded_history_replays_with_todays_code(scenario: str) -> None:
    path = HISTORIES / f"{scenario}.json"
    history = WorkflowHistory.from_json(f"keel/test/{scenario}", path.read_text())
    replayer = Replayer(workflows=[SessionWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)  # raises on a nondeterminism error
