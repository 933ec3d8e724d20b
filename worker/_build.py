"""Build the Temporal workers of one process: which queues it polls and what runs there."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import LlmActivities, ToolActivities
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.temporal import model_task_queues
from workflows import SessionWorkflow

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
"""How long a stopping worker lets in-flight activities finish."""


def build_workers(
    client: Client,
    *,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    task_queues: Sequence[str] | None = None,
    max_concurrent_activities: int = 100,
    deltas: DeltaBus | None = None,
) -> list[Worker]:
    """One worker per task queue this process serves.

    Args:
        client: a client built by `keel.temporal.connect`.
        settings: the process settings (queue names).
        formation: the formation (for per-model queues).
        store: the transcript store the activities write to.
        task_queues: poll only these queues; by default the sessions queue,
            the activities queue and every per-model queue.
        max_concurrent_activities: per worker.
        deltas: where LLM activities stream text; None: no streaming.
    """
    llm = LlmActivities(store, deltas=deltas)
    tools = ToolActivities()
    queues = (
        list(task_queues)
        if task_queues
        else [
            settings.sessions_task_queue,
            settings.activities_task_queue,
            *model_task_queues(formation),
        ]
    )
    workers = []
    for queue in dict.fromkeys(queues):
        if queue == settings.sessions_task_queue:
            workers.append(Worker(client, task_queue=queue, workflows=[SessionWorkflow]))
        elif queue == settings.activities_task_queue:
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=[llm.call_model, tools.call_tool],
                    max_concurrent_activities=max_concurrent_activities,
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
            )
        else:
            # A model's own queue runs LLM calls only (a GPU worker).
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=[llm.call_model],
                    max_concurrent_activities=max_concurrent_activities,
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
            )
    return workers
