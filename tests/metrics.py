"""The Prometheus metrics Keel's processes export, by name, as the tests scrape them.

`tests/worker/test_metrics.py` and `tests/api/test_usage.py` check that each name here is
really exported; `tests/test_docs.py` checks that the Grafana dashboard of
docs/observability.md queries no other metric.
"""

from __future__ import annotations

WORKER_METRICS = frozenset(
    {
        # Keel's, recorded through the SDK's meters.
        "keel_tokens_total",
        "keel_cost_usd_total",
        "keel_turns_total",
        "keel_turn_latency",
        # The Temporal SDK's own worker metrics.
        "temporal_activity_execution_failed",
        "temporal_activity_schedule_to_start_latency",
        "temporal_activity_execution_latency",
        "temporal_workflow_task_schedule_to_start_latency",
    }
)
"""Served by a worker on `KEEL_METRICS_PORT`; histograms by their base name."""
API_METRICS = frozenset(
    {
        "keel_http_requests_total",
        "keel_http_request_seconds",
        "keel_sessions_awaiting_approval",
    }
)
"""Served by the API on `GET /metrics`."""
EXPORTED = WORKER_METRICS | API_METRICS
