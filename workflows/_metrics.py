"""A session's metrics: one count and one latency per turn that ends, by agent and status.

Through `workflow.metric_meter()`, the SDK's meter for workflows: it records nothing while
a workflow task replays, so a turn counts once however often its history is replayed, and
it schedules no command, so recording changes no history. The worker's runtime exports
them (`KEEL_METRICS_PORT`) beside the SDK's own metrics.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

TURNS_METRIC = "keel_turns_total"
TURN_LATENCY_METRIC = "keel_turn_latency"
"""Milliseconds from `turn.started` to the turn's end, as the SDK's own `*_latency` are."""


def turn_ended(agent: str, status: str, took: timedelta) -> None:
    """Count a turn that ended (`completed`, `failed` or `cancelled`) and how long it took."""
    meter = workflow.metric_meter()
    labels = {"agent": agent, "status": status}
    meter.create_counter(TURNS_METRIC, "Turns that ended", "turns").add(1, labels)
    latency = meter.create_histogram(TURN_LATENCY_METRIC, "Turn latency", "ms")
    latency.record(max(0, int(took.total_seconds() * 1000)), labels)
