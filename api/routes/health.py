"""`/health` and `/metrics`: is this API up, can it reach Temporal, are workers polling."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Annotated, Any

import psutil
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from api._metrics import refresh_gauges
from api.deps import AppState, State, require_admin, sees_internals
from keel import __version__
from keel.temporal import model_task_queues

router = APIRouter(tags=["health"])
PROBE_TIMEOUT_S = 2.0
_process = psutil.Process(os.getpid())


@router.get("/health")
async def health(
    state: State, response: Response, internals: Annotated[bool, Depends(sees_internals)]
) -> dict[str, Any]:
    """Status, uptime, requests served, memory, CPU, Temporal reachability, pollers per queue.

    `events.deltas` says where token deltas come from (`in-process`, `redis`),
    or null when this API streams step events only.

    Answers 503 when Temporal cannot be reached, so load balancers stop sending traffic.
    With API keys configured, only admin keys see more than `status` and `version`.
    """
    temporal = await _temporal_health(state)
    if not temporal["reachable"]:
        response.status_code = 503
    status = {"status": "ok" if temporal["reachable"] else "degraded", "version": __version__}
    if not internals:
        return status
    memory = _process.memory_info()
    return {
        **status,
        "formation": state.formation.id,
        "uptime_s": round(time.monotonic() - state.started_at, 3),
        "requests": state.requests,
        "memory": {"rss_bytes": memory.rss},
        "cpu": {"percent": _process.cpu_percent(interval=None), "count": psutil.cpu_count()},
        "temporal": temporal,
        "events": {
            "deltas": state.deltas.kind if state.deltas else None,
            "subscriptions": state.streams.subscriptions,
        },
    }


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_admin)])
async def metrics(state: State) -> Response:
    """Prometheus metrics of this API process."""
    await refresh_gauges(state)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _temporal_health(state: AppState) -> dict[str, Any]:
    settings = state.settings
    out: dict[str, Any] = {
        "address": settings.temporal_address,
        "namespace": settings.namespace,
        "reachable": False,
        "task_queues": {},
    }
    client = state.client
    if client is None:
        return out
    try:
        out["reachable"] = await asyncio.wait_for(
            client.service_client.check_health(), PROBE_TIMEOUT_S
        )
        queues = {
            state.queues.sessions: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            state.queues.activities: TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            **{
                q: TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
                for q in model_task_queues(state.formation)
            },
        }
        counts = await asyncio.gather(*(_pollers(client, q, t) for q, t in queues.items()))
        out["task_queues"] = {q: {"pollers": n} for q, n in zip(queues, counts, strict=True)}
    except Exception as err:  # any failure here means "not reachable", never a 500
        out["reachable"] = False
        out["error"] = type(err).__name__
    return out


async def _pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> int:
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        ),
        timeout=timedelta(seconds=PROBE_TIMEOUT_S),
    )
    return len(described.pollers)
