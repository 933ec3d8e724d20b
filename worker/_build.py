"""Build the Temporal workers of one process: which queues it polls and what runs there."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Interceptor, Worker, WorkerDeploymentConfig

from activities import LlmActivities, ToolActivities, ToolCatalog
from activities._cache import ResponseCache, StoreAnswers
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
from keel.temporal import task_queues as formation_task_queues
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
    cache: ResponseCache | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> list[Worker]:
    """One worker per task queue this process serves.

    Args:
        client: a client built by `keel.temporal.connect`.
        settings: the process settings (queue names, versioning).
        formation: the formation (its id names its queues; its per-model queues).
        store: the transcript store the activities write to.
        catalog: the tools the activities run (see `worker_host`); none by default.
        services: objects for Python tools that `inject` them.
        task_queues: poll only these queues (see `polled_queues`); by default the
            formation's sessions and activities queues and every per-model queue.
        max_concurrent_activities: per worker.
        vector_memory: the vector memory, when the formation enables it (the caller closes it).
        deltas: where LLM activities stream text; None: no streaming.
        cache: the response cache of models with `cache_ttl_s` (the caller closes it);
            by default one in `store`.
        interceptors: for every worker (tests inject faults with them).
    """
    catalog = catalog or ToolCatalog()
    own = formation_task_queues(settings, formation)
    references = formation.memory.references
    llm = LlmActivities(
        store,
        catalog,
        deltas=deltas,
        inline_max_chars=references.inline_max_chars,
        cache=cache or ResponseCache(StoreAnswers(store)),
    )
    tools = ToolActivities(
        catalog,
        services=services,
        references=References(store, threshold_bytes=references.threshold_bytes),
    )
    approvals = ApprovalActivities(catalog)
    transcript = TranscriptActivities(store)
    messaging = MessagingActivities(client, store, own)
    memory_activities = MemoryActivities(store, vector_memory)
    # Summaries and fact extraction call the model: they run wherever its calls run,
    # which is the session's own queue unless the model names one.
    model_memory = MemoryModelActivities(store)
    model_activities: list[Callable[..., Any]] = [
        llm.call_model,
        model_memory.summarize,
        model_memory.extract_facts,
    ]
    # A legacy name runs what today's does, for the formation's sessions from before.
    sessions_queues = {own.sessions, own.legacy_sessions}
    activities_queues = {own.activities, own.legacy_activities}
    # For every worker; the interceptors reach workflow tasks as well as activities.
    every_worker: dict[str, Any] = {
        "max_concurrent_activities": max_concurrent_activities,
        "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
        "interceptors": interceptors,
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        **_versioning(settings),
    }
    workers = []
    for queue in polled_queues(settings, formation, task_queues):
        if queue in sessions_queues:
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
        elif queue in activities_queues:
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


def polled_queues(
    settings: Settings, formation: Formation, task_queues: Sequence[str] | None = None
) -> list[str]:
    """The queues a worker polls: `task_queues`, by default the formation's sessions and
    activities queues and its models' queues; with `serve_legacy_queues`, the legacy
    name of each of the formation's two after it."""
    own = formation_task_queues(settings, formation)
    legacy = {own.sessions: own.legacy_sessions, own.activities: own.legacy_activities}
    wanted = task_queues or [own.sessions, own.activities, *model_task_queues(formation)]
    return list(dict.fromkeys(name for q in wanted for name in (q, legacy.get(q)) if name))


def _versioning(settings: Settings) -> dict[str, Any]:
    """Worker Versioning, for a worker of a deployment: its build takes the sessions Temporal
    routes to it, and a session stays on the build it started on (pinned) until it continues
    as new; each worker of the process shares the build."""
    if settings.worker_deployment is None or settings.worker_build_id is None:
        return {}
    version = WorkerDeploymentVersion(settings.worker_deployment, settings.worker_build_id)
    config = WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )
    return {"deployment_config": config}
