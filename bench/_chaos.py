"""One chaos run: trials of concurrent chat sessions while processes are SIGKILLed, then a count.

Shared by `python -m bench.chaos` (long runs) and `tests/crash/test_chaos.py`
(one short trial), so both prove the same thing the same way.

A trial starts `sessions` sessions and sends `turns` turns in each, the
sessions at once and each session's turns one after another. Its kills are
spread over the turns: the i-th of n fires once i/(n+1) of the trial's turns
have been sent, after a random pause of up to KILL_JITTER_S so that it lands
sometimes in a model call, sometimes in a workflow task, sometimes between
them. Each kill waits until the process it killed serves again; kills never
overlap. Afterwards every turn is checked against the transcript (`GET
/v1/sessions/{id}`) and the workflow histories:

- **lost**: the client never got the turn's answer, or the transcript lacks
  its user message or its answer;
- **duplicated**: its user message or answer is in the transcript twice;
- **stray**: a message in the transcript that no turn sent (a turn run twice
  under another id would show here);
- **extra model calls**: a session's histories completed more model calls
  than it had turns (each turn here is one model call).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._chaos_drive import Client, Progress, Turn
from bench._chaos_stack import ChaosStack, Downtime, Target
from keel.names import Activities
from keel.session_handle import SessionHandle
from tests.runs import activities, session_runs

KILL_JITTER_S = 0.3
"""Up to this long after a kill's turn count is reached, so kills land at varied points."""


@dataclass(frozen=True)
class Plan:
    """What to run.

    Args:
        trials: how many trials, one after another, on one stack that lives through all.
        kills: SIGKILLs in all, spread over the trials as evenly as they go.
        sessions: sessions at once in each trial.
        turns: turns per session in each trial.
        seed: of the kill order and timing.
        deadline_s: how long one turn may take, through every retry, before it is lost.
    """

    trials: int = 1
    kills: int = 5
    sessions: int = 4
    turns: int = 4
    seed: int = 0
    deadline_s: float = 60.0


def kill_targets(plan: Plan, rng: random.Random) -> list[list[Target]]:
    """Each trial's kills, in order: one of the dev server, one of the API, the rest of workers.

    A trial of fewer than three kills kills the worker only.
    """
    base, extra = divmod(plan.kills, plan.trials)
    schedule: list[list[Target]] = []
    for trial in range(plan.trials):
        n = base + (1 if trial < extra else 0)
        workers: list[Target] = ["worker"] * (n - 2 if n >= 3 else n)
        targets: list[Target] = ["server", "api", *workers] if n >= 3 else workers
        rng.shuffle(targets)
        schedule.append(targets)
    return schedule


@dataclass
class TrialResult:
    """What one trial did and found."""

    trial: int
    kills: list[Downtime]
    turns: int
    lost: int = 0
    duplicated: int = 0
    stray: int = 0
    extra_model_calls: int = 0
    retried_model_calls: int = 0
    """Model calls that a kill cut off and a later attempt finished."""
    slowest_read_s: float = 0.0
    slowest_read: str = ""
    reads: int = 0
    unanswered_reads: int = 0
    hung_reads: int = 0
    slowest_turn_s: float = 0.0
    retries: int = 0
    """POST attempts beyond the first, over all turns."""
    failures: list[str] = field(default_factory=list)
    """Each lost, duplicated or stray turn, with its workflow id, for a report."""


async def run_trial(
    stack: ChaosStack,
    http: httpx.AsyncClient,
    plan: Plan,
    *,
    trial: int,
    targets: list[Target],
    rng: random.Random,
) -> TrialResult:
    """Run one trial on `stack` (up and serving) and check every turn it sent."""
    client = Client(http, deadline_s=plan.deadline_s)
    tag = uuid.uuid4().hex[:6]
    sessions = await asyncio.gather(
        *(
            client.create_session(f"chaos-{tag}-{s}", key=f"chaos-{tag}-{s}")
            for s in range(plan.sessions)
        )
    )
    turns = {
        workflow_id: [
            Turn(session_id, f"trial {trial} session {s} turn {n} {tag}", f"{tag}-{s}-{n}")
            for n in range(plan.turns)
        ]
        for s, (session_id, workflow_id) in enumerate(sessions)
    }
    progress, stop = Progress(), asyncio.Event()
    readers = [asyncio.create_task(client.read_until(ts, stop)) for ts in turns.values()]
    chaos = asyncio.create_task(
        _kill_along(stack, targets, progress, total=plan.sessions * plan.turns, rng=rng)
    )

    async def one_session(session_turns: list[Turn]) -> None:
        for turn in session_turns:
            await client.chat(turn, progress)

    try:
        await asyncio.gather(*(one_session(ts) for ts in turns.values()))
        downtimes = await chaos
    finally:
        stop.set()
        chaos.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    result = TrialResult(trial=trial, kills=downtimes, turns=plan.sessions * plan.turns)
    for workflow_id, session_turns in turns.items():
        await _check(client, stack, workflow_id, session_turns, result)
    sent = [t for ts in turns.values() for t in ts]
    reads = client.reads
    result.slowest_read_s, result.slowest_read = round(reads.slowest_s, 3), reads.slowest
    result.reads, result.unanswered_reads, result.hung_reads = (
        reads.answered,
        reads.unanswered,
        reads.hung,
    )
    result.slowest_turn_s = max(t.seconds for t in sent)
    result.retries = sum(t.attempts - 1 for t in sent)
    return result


async def _kill_along(
    stack: ChaosStack, targets: list[Target], progress: Progress, *, total: int, rng: random.Random
) -> list[Downtime]:
    downtimes: list[Downtime] = []
    for i, target in enumerate(targets):
        await progress.reach(-(-(i + 1) * total // (len(targets) + 1)))  # ceil
        await asyncio.sleep(rng.uniform(0, KILL_JITTER_S))
        downtimes.append(await stack.kill(target, in_flight=progress.in_flight))
    return downtimes


async def _check(
    client: Client,
    stack: ChaosStack,
    workflow_id: str,
    turns: list[Turn],
    result: TrialResult,
) -> None:
    """Count the session's lost, duplicated and stray turns into `result`."""
    messages = await client.messages(turns[0].session_id)
    expected: set[tuple[str, str]] = set()
    for turn in turns:
        mine = {("user", turn.text), ("assistant", f"echo: {turn.text}")}
        expected |= mine
        counts = {
            role: sum(1 for m in messages if (m["role"], m["content"]) == (role, content))
            for role, content in mine
        }
        where = f"{workflow_id} turn {turn.turn_id} ({turn.text!r})"
        if turn.status != "completed" or 0 in counts.values():
            result.lost += 1
            result.failures.append(
                f"lost: {where}: status {turn.status}, {counts}, after {turn.attempts}"
                f" attempts, {turn.seconds} s; {turn.error or ''}"
            )
        elif max(counts.values()) > 1:
            result.duplicated += 1
            result.failures.append(f"duplicated: {where}: {counts}")
    for m in messages:
        if (m["role"], m["content"]) not in expected:
            result.stray += 1
            result.failures.append(f"stray: {workflow_id}: {m['role']} {m['content']!r}")
    assert stack.client is not None
    runs = await session_runs(stack.client, SessionHandle(stack.client, workflow_id))
    completed = [
        call
        for run in runs
        for call in activities(run, Activities.CALL_MODEL)
        if call.outcome == "completed"
    ]
    calls = len(completed)
    result.retried_model_calls += sum(1 for call in completed if call.attempt > 1)
    if calls > len(turns):
        result.extra_model_calls += calls - len(turns)
        result.failures.append(f"extra model calls: {workflow_id}: {calls} for {len(turns)}")


async def run(
    plan: Plan, workdir: Path, *, on_trial: Callable[[TrialResult], None] | None = None
) -> list[TrialResult]:
    """Start a stack in `workdir`, run the plan's trials on it, stop it; every trial's result.

    `on_trial` hears of each trial as it ends (for progress on a long run).
    """
    rng = random.Random(plan.seed)
    schedule = kill_targets(plan, rng)
    stack = ChaosStack(workdir)
    results: list[TrialResult] = []
    try:
        await stack.start()
        async with httpx.AsyncClient(base_url=stack.api_url) as http:
            for trial, targets in enumerate(schedule):
                result = await run_trial(stack, http, plan, trial=trial, targets=targets, rng=rng)
                results.append(result)
                if on_trial is not None:
                    on_trial(result)
    except BaseException:
        with contextlib.suppress(Exception):  # why it failed, for whoever reads the output
            sys.stderr.write(stack.logs() + "\n")
        raise
    finally:
        stack.stop()
    return results


def summary(plan: Plan, results: list[TrialResult]) -> dict[str, Any]:
    """The figures of a run, over all its trials, and each trial's own."""
    kills = [k for r in results for k in r.kills]
    by_target: dict[str, list[float]] = {}
    for kill in kills:
        by_target.setdefault(kill.target, []).append(kill.down_s)
    return {
        "plan": asdict(plan),
        "trials": len(results),
        "kills": len(kills),
        "kills_by_target": {t: len(d) for t, d in sorted(by_target.items())},
        "slowest_restart_s": {t: max(d) for t, d in sorted(by_target.items())},
        "turns": sum(r.turns for r in results),
        "lost": sum(r.lost for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "stray": sum(r.stray for r in results),
        "extra_model_calls": sum(r.extra_model_calls for r in results),
        "retried_model_calls": sum(r.retried_model_calls for r in results),
        "kills_with_turns_in_flight": sum(1 for k in kills if k.in_flight),
        "slowest_read_s": max((r.slowest_read_s for r in results), default=0.0),
        "slowest_read": max(results, key=lambda r: r.slowest_read_s).slowest_read
        if results
        else "",
        "reads": sum(r.reads for r in results),
        "unanswered_reads": sum(r.unanswered_reads for r in results),
        "hung_reads": sum(r.hung_reads for r in results),
        "slowest_turn_s": max((r.slowest_turn_s for r in results), default=0.0),
        "retries": sum(r.retries for r in results),
        "failures": [f for r in results for f in r.failures],
        "per_trial": [asdict(r) for r in results],
    }
