"""Chaos: sessions chat while the worker, the API and the dev server are SIGKILLed; no turn is lost.

The harness is `bench/_chaos.py`, the one `python -m bench.chaos` runs for
long; here one short trial: 4 sessions of 4 turns, the worker killed three
times, the API once and the dev server once (about a minute, most of it
restarting processes).
"""

from __future__ import annotations

from pathlib import Path

from bench._chaos import Plan, run, summary


async def test_turns_complete_exactly_once_while_processes_are_killed(tmp_path: Path) -> None:
    # A turn gives up after 45 s, so a wedged one fails here before pytest's timeout.
    plan = Plan(trials=1, kills=5, sessions=4, turns=4, deadline_s=45)
    figures = summary(plan, await run(plan, tmp_path))

    assert figures["kills_by_target"] == {"api": 1, "server": 1, "worker": 3}
    assert figures["turns"] == 16
    assert figures["failures"] == []
    assert (figures["lost"], figures["duplicated"], figures["stray"]) == (0, 0, 0)
    assert figures["extra_model_calls"] == 0
    assert figures["hung_reads"] == 0, figures["slowest_read"]
