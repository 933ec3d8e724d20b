"""Temporal client set-up shared by every process: converter, search attributes, UI links."""

from __future__ import annotations

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
from temporalio.service import RPCError

from keel.formation import Formation
from keel.logging import get_logger
from keel.tracing import client_interceptors

TENANT_ATTR = SearchAttributeKey.for_keyword("KeelTenant")
USER_ATTR = SearchAttributeKey.for_keyword("KeelUser")
AGENT_ATTR = SearchAttributeKey.for_keyword("KeelAgent")
TOPICS_ATTR = SearchAttributeKey.for_keyword_list("KeelTopics")
PENDING_APPROVALS_ATTR = SearchAttributeKey.for_int("KeelPendingApprovals")
"""How many approvals a session waits for: the approvals inbox lists sessions by it.
Upserted by the workflow when the count changes (sessions of older builds never set it)."""
SEARCH_ATTRIBUTES = (TENANT_ATTR, USER_ATTR, AGENT_ATTR, TOPICS_ATTR, PENDING_APPROVALS_ATTR)
"""Registered at start, so sessions can be filtered by them in the Temporal UI."""
_CLI_TYPES = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
    IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
}

log = get_logger(__name__)


async def connect(address: str, namespace: str) -> Client:
    """A client with the pydantic data converter, as every Keel process must use, and the
    tracing interceptor when tracing is on (its workers inherit it)."""
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        interceptors=client_interceptors(),
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


def model_task_queues(formation: Formation) -> list[str]:
    """Queues that models name for their own LLM calls (e.g. GPU workers)."""
    return sorted({m.task_queue for m in formation.models.values() if m.task_queue})
