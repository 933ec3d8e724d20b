"""Temporal client set-up shared by every process: converter, search attributes, task queues,
UI links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError

from keel.formation import Formation
from keel.logging import get_logger
from keel.settings import ACTIVITIES_TASK_QUEUE, SESSIONS_TASK_QUEUE, Settings
from keel.tracing import client_interceptors

FORMATION_ATTR = SearchAttributeKey.for_keyword("KeelFormation")
"""The id of the formation a session belongs to, set at start: formations sharing a
namespace list and reach only their own sessions (`TaskQueues.owns`)."""
TENANT_ATTR = SearchAttributeKey.for_keyword("KeelTenant")
USER_ATTR = SearchAttributeKey.for_keyword("KeelUser")
AGENT_ATTR = SearchAttributeKey.for_keyword("KeelAgent")
TOPICS_ATTR = SearchAttributeKey.for_keyword_list("KeelTopics")
PENDING_APPROVALS_ATTR = SearchAttributeKey.for_int("KeelPendingApprovals")
"""How many approvals a session waits for: the approvals inbox lists sessions by it.
Upserted by the workflow when the count changes (sessions of older builds never set it)."""
SEARCH_ATTRIBUTES = (
    FORMATION_ATTR,
    TENANT_ATTR,
    USER_ATTR,
    AGENT_ATTR,
    TOPICS_ATTR,
    PENDING_APPROVALS_ATTR,
)
"""Registered at start, so sessions can be filtered by them in the Temporal UI."""
_CLI_TYPES = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
    IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
}

log = get_logger(__name__)


async def connect(address: str, namespace: str, *, runtime: Runtime | None = None) -> Client:
    """A client with the pydantic data converter, as every Keel process must use, and the
    tracing interceptor when tracing is on (its workers inherit it).

    Args:
        address: Temporal's frontend, `host:port`.
        namespace: The namespace.
        runtime: The SDK runtime the client (and its workers) report metrics through;
            None: the default one, which exports none.
    """
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        interceptors=client_interceptors(),
        runtime=runtime,
    )


def metrics_runtime(host: str, port: int) -> Runtime:
    """An SDK runtime serving Prometheus metrics at `http://host:port/metrics`.

    The Temporal SDK's worker metrics (`temporal_*`: task latencies, activity failures,
    schedule-to-start) and what activities record through `activity.metric_meter()`
    (Keel's `keel_tokens_total`, `keel_cost_usd_total`) share that one endpoint.
    """
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}"))
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register Keel's search attributes if the namespace lacks them.

    The dev server gets them as start flags; a production cluster gets them
    here, on first start, when the caller may administer the namespace.
    """
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = {
            key.name: IndexedValueType.ValueType(key.indexed_value_type)
            for key in SEARCH_ATTRIBUTES
            if key.name not in listed.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
            log.info("registered search attributes", names=sorted(missing))
    except RPCError as err:
        log.warning("could not register search attributes", error=err.message)


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """A search attribute's type as the Temporal CLI names it (`--search-attribute N=T`)."""
    return _CLI_TYPES[IndexedValueType.ValueType(key.indexed_value_type)]


def workflow_ui_url(ui_base: str, namespace: str, workflow_id: str, run_id: str | None) -> str:
    """A link to a workflow in the Temporal UI."""
    path = f"/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    if run_id:
        path += f"/{quote(run_id, safe='')}"
    return ui_base.rstrip("/") + path + "/history"


DEFAULT_FORMATION = "default"
"""The formation id whose queues keep the names they had before they carried the id."""


@dataclass(frozen=True)
class TaskQueues:
    """A formation's task queues, and which sessions of its namespace are its own."""

    formation: str
    sessions: str
    """Where its sessions run (their model and tool calls too)."""
    activities: str
    """Where its memory, messaging and argument checks run."""
    legacy_sessions: str | None = None
    """The sessions queue of its sessions from before queue names carried its id."""
    legacy_activities: str | None = None
    """Where those older sessions' memory, messaging and checks run."""

    @property
    def formationless_queues(self) -> tuple[str, ...]:
        """Sessions queues whose sessions without `KeelFormation` are this formation's.

        Such sessions were started before sessions carried it (or by an API of that
        time, during an upgrade): they are the formation's that serves their queue.
        """
        return (self.sessions, *filter(None, [self.legacy_sessions]))

    def owns(self, formation: str | None, task_queue: str) -> bool:
        """Whether a session with this `KeelFormation` (None: unset) on `task_queue` is ours."""
        if formation is not None:
            return formation == self.formation
        return task_queue in self.formationless_queues

    def visibility_clause(self) -> str:
        """The visibility filter `owns` is: this formation's sessions, and those it took over."""
        queues = ", ".join(f"'{q}'" for q in self.formationless_queues)
        return (
            f"({FORMATION_ATTR.name} = '{self.formation}'"
            f" OR ({FORMATION_ATTR.name} IS NULL AND TaskQueue IN ({queues})))"
        )


def task_queues(settings: Settings, formation: Formation) -> TaskQueues:
    """The formation's queues: the API starts sessions there and its workers poll them.

    `keel-sessions` and `keel-activities` for the formation `default`, else
    `keel-sessions.<id>` and `keel-activities.<id>`, so formations sharing a
    namespace never run each other's sessions; `KEEL_SESSIONS_TASK_QUEUE` and
    `KEEL_ACTIVITIES_TASK_QUEUE` name them instead when set. With
    `serve_legacy_queues`, also the names its older sessions run on (`keel-sessions`,
    `keel-activities`), where they differ.
    """
    suffix = "" if formation.id == DEFAULT_FORMATION else f".{formation.id}"
    sessions = settings.sessions_task_queue or SESSIONS_TASK_QUEUE + suffix
    activities = settings.activities_task_queue or ACTIVITIES_TASK_QUEUE + suffix
    legacy = settings.serve_legacy_queues
    return TaskQueues(
        formation=formation.id,
        sessions=sessions,
        activities=activities,
        legacy_sessions=SESSIONS_TASK_QUEUE if legacy and sessions != SESSIONS_TASK_QUEUE else None,
        legacy_activities=(
            ACTIVITIES_TASK_QUEUE if legacy and activities != ACTIVITIES_TASK_QUEUE else None
        ),
    )


def model_task_queues(formation: Formation) -> list[str]:
    """Queues that models name for their own LLM calls (e.g. GPU workers)."""
    return sorted({m.task_queue for m in formation.models.values() if m.task_queue})
