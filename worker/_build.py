"""Build the Temporal workers of one process: which queues it polls and what runs there."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from activities import LlmActivities, ToolActivities, ToolCatalog
from activities._heartbeat import HEARTBEAT_EVERY_S
from activities._references import References
from activities.approvals import ApprovalActivities
from activities.memory import MemoryActivities
from activities.memory_model import MemoryModelActivities
from activities.messaging import MessagingActivities
from activities.transcript import TranscriptActivities
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.temporal import model_task_queues
from worker._sandbox import session_sandbox
from workflows import SessionWorkflow

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
"""How long a stopping worker lets in-flight activities finish."""
HEARTBEAT_THROTTLE = timedelta(seconds=HEARTBEAT_EVERY_S)
"""The most a worker holds back an activity's heartbeats. Temporal's default (80% of the
15 s heartbeat timeout) would hold a cancel of a turn back for up to 12 s."""


def build_workers(
    client: Client,
    *,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    catalog: ToolCatalog | None = None,
    services: Mapping[str, object] | None = None,
    task_queues: Sequence[str] | None = None,
    max_concurrent_activities: int = 100,
    vector_memory: VectorMemory | None = None,
    deltas: DeltaBus | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> list[Worker]:
    """One worker per task queue this process serves.

    Args:
        client: a client built by `keel.temporal.connect`.
        settings: the process settings (queue names).
        formation: the formation (for per-model queues).
        store: the transcript store the activities write to.
        catalog: the tools the activities run (see `worker_host`); none by default.
        services: objects for Python tools that `inject` them.
        task_queues: poll only these queues; by default the sessions queue,
            the activities queue and every per-model queue.
        max_concurrent_activities: per worker.
        vector_memory: the vector memory, when the formation enables it (the caller closes it).
        deltas: where LLM activities stream text; None: no streaming.
        interceptors: for every worker (tests inject faults with them).
    """
    catalog = catalog or ToolCatalog()
    references = formation.memory.references
    llm = LlmActivities(store, catalog, deltas=deltas, inline_max_chars=references.inline_max_chars)
    tools = ToolActivities(
        catalog,
        services=services,
        references=References(store, threshold_bytes=references.threshold_bytes),
    )
    approvals = ApprovalActivities(catalog)
    transcript = TranscriptActivities(store)
    messaging = MessagingActivities(client, store)
    memory_activities = MemoryActivities(store, vector_memory)
    # Summaries and fact extraction call the model: they run wherever its calls run,
    # which is the session's own queue unless the model names one.
    model_memory = MemoryModelActivities(store)
    model_activities: list[Callable[..., Any]] = [
        llm.call_model,
        model_memory.summarize,
        model_memory.extract_facts,
    ]
    queues = (
        list(task_queues)
        if task_queues
        else [
            settings.sessions_task_queue,
            settings.activities_task_queue,
            *model_task_queues(formation),
        ]
    )
    # For every worker; the interceptors reach workflow tasks as well as activities.
    every_worker: dict[str, Any] = {
        "max_concurrent_activities": max_concurrent_activities,
        "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
        "interceptors": interceptors,
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
    }
    workers = []
    for queue in dict.fromkeys(queues):
        if queue == settings.sessions_task_queue:
            # The workflows, their model calls and tool calls on one queue: a call
            # scheduled by a workflow task starts eagerly, in the same worker, with no matching.
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    workflows=[SessionWorkflow],
                    workflow_runner=session_sandbox(),
                    activities=[*model_activities, tools.call_tool],
                    max_cached_workflows=settings.max_cached_sessions,
                    **every_worker,
                )
            )
        elif queue == settings.activities_task_queue:
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    # Model and tool calls too: those that sessions scheduled here before
                    # they moved to the session's own queue.
                    activities=[
                        *model_activities,
                        llm.seed_transcript,
                        transcript.truncate,
                        tools.call_tool,
                        approvals.validate_arguments,
                        messaging.ask_session,
                        messaging.publish,
                        memory_activities.recall,
                        memory_activities.write,
                        memory_activities.read_reference,
                    ],
                    **every_worker,
                )
            )
        else:
            # A model's own queue runs LLM calls only (a GPU worker).
            workers.append(
                Worker(client, task_queue=queue, activities=model_activities, **every_worker)
            )
    return workers
