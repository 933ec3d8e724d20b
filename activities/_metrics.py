"""Worker-side Prometheus metrics of model calls: tokens and cost per agent and model.

Recorded through `activity.metric_meter()`, so they go wherever the worker's Temporal
Runtime exports metrics (`KEEL_METRICS_PORT`, next to the SDK's own worker metrics)
and cost nothing when it exports none. Recorded once per successful model call: an
attempt that fails records nothing, and its retry records the call once.
"""

from __future__ import annotations

import threading

from temporalio import activity

from keel.messages import Usage

TOKENS_METRIC = "keel_tokens_total"
COST_METRIC = "keel_cost_usd_total"

_totals: dict[tuple[str, str, str], float] = {}
_lock = threading.Lock()


def record_call(agent: str, model: str, usage: Usage) -> None:
    """Count one model call's tokens (`kind` prompt or completion) and add its cost.

    The SDK's meter has integer counters only: cost is a float gauge set to this
    worker's running total per agent and model, which rises like a counter and
    restarts at 0 with the worker, so `rate()` and `increase()` read it as one.
    """
    meter = activity.metric_meter()
    tokens = meter.create_counter(TOKENS_METRIC, "Tokens of model calls", "tokens")
    labels = {"agent": agent, "model": model}
    tokens.add(usage.prompt_tokens, {**labels, "kind": "prompt"})
    tokens.add(usage.completion_tokens, {**labels, "kind": "completion"})
    key = (activity.info().task_queue, agent, model)
    with _lock:
        total = _totals[key] = _totals.get(key, 0.0) + usage.cost_usd
    cost = meter.create_gauge_float(COST_METRIC, "Cost of model calls, USD (a running total)")
    cost.set(total, labels)
