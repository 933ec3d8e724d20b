"""`/v1/memory`: a user's long-term memories: list, delete one, forget the user entirely."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api._errors import temporal_errors
from api._sessions import sessions_query
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import (
    UUID_PATTERN,
    ForgetResult,
    ForgetUser,
    MemoryOut,
    MemoryPage,
    UserIdQuery,
)
from keel.logging import get_logger
from keel.memory import MemoryItem, MemoryScope, VectorMemory

router = APIRouter(prefix="/v1/memory", tags=["memory"])
log = get_logger(__name__)


@router.get("", responses=problem_responses(503))
async def list_memories(
    state: State,
    caller: CurrentCaller,
    user_id: UserIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[str | None, Query(pattern=UUID_PATTERN, max_length=36)] = None,
) -> MemoryPage:
    """The user's memories in this formation.

    Callers bound to a user (a client key, or `X-User-Id`) see their own;
    others see `user_id`'s, or without it their own (`anonymous` in dev mode).
    `offset` is a page's `next_offset`.
    """
    user = caller.user_filter(user_id) or caller.user_id
    if not state.formation.memory.vector.enabled:
        return MemoryPage(memories=[])
    scope = MemoryScope(tenant=caller.tenant, user_id=user, formation=state.formation.id)
    items, next_offset = await _vector(state.vector_memory).list(scope, limit=limit, offset=offset)
    return MemoryPage(memories=[_out(item) for item in items], next_offset=next_offset)


@router.delete(
    "/{memory_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 503),
)
async def delete_memory(
    memory_id: Annotated[str, Path(max_length=64)], state: State, caller: CurrentCaller
) -> Response:
    """Delete one memory; 404 unless it is the caller's to delete."""
    memory = _vector(state.vector_memory) if state.formation.memory.vector.enabled else None
    point = _uuid(memory_id)
    item = await memory.get(point) if memory and point else None
    if (
        memory is None
        or point is None
        or item is None
        or item.tenant != caller.tenant
        or (caller.user_given and item.user_id != caller.user_id)
    ):
        raise Problem(404, f"no memory {memory_id!r}", type_="memory-not-found")
    await memory.delete([point])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/forget", responses=problem_responses(403, 503))
async def forget_user(
    body: ForgetUser, state: State, client: TemporalClient, caller: CurrentCaller
) -> ForgetResult:
    """Remove every trace of a user from the vector store and the transcript store.

    The user's running sessions of this formation are terminated first, so nothing
    writes again; then their transcripts (with summaries and references) in this
    formation's store and all their memories, in every formation that shares the
    vector store, are deleted. Safe to repeat; forget in each formation of a namespace.
    """
    if caller.user_given and body.user_id != caller.user_id:
        raise Problem(403, "a caller bound to a user may forget only that user", type_="forbidden")
    # Refuse before deleting anything rather than halfway.
    vector = _vector(state.vector_memory) if state.formation.memory.vector.enabled else None
    tenant, user = caller.tenant, body.user_id
    query = sessions_query(state, tenant, user)
    # Visibility may lag behind a new session and may have dropped old ones; the store's
    # session records cover both, so every session that holds data is found.
    sessions = set(await state.store.user_sessions(tenant, user))
    with temporal_errors():
        async for execution in client.list_workflows(query):
            sessions.add(execution.id)
        terminated = sum([await _terminate(client, session) for session in sorted(sessions)])
    rows = await state.store.delete_sessions(sorted(sessions))
    # Stored answers of the user's idempotent requests hold message text too.
    rows += await state.store.delete_user_idempotency(tenant, user)
    memories = await vector.forget(tenant, user) if vector else 0
    log.info("user forgotten", sessions=len(sessions), rows=rows, memories=memories)
    return ForgetResult(
        user_id=user,
        sessions_terminated=terminated,
        sessions_deleted=len(sessions),
        rows_deleted=rows,
        memories_deleted=memories,
    )


async def _terminate(client: Client, workflow_id: str) -> int:
    """Terminate a session so nothing writes for it again; 1 if it was running."""
    try:
        await client.get_workflow_handle(workflow_id).terminate(reason="user forgotten")
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return 0  # closed already, or never started
        raise
    return 1


def _vector(memory: VectorMemory | None) -> VectorMemory:
    if memory is None:
        raise Problem(
            503,
            "vector memory in local mode is held by the worker process: run the API with the"
            " worker (keel dev) or give memory.vector a Qdrant server url",
            type_="memory-unavailable",
        )
    return memory


def _uuid(value: str) -> str | None:
    """`value` as the vector store spells ids (any form `uuid.UUID` reads), or None."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _out(item: MemoryItem) -> MemoryOut:
    return MemoryOut(
        id=item.id,
        kind=item.kind,
        text=item.text,
        user_id=item.user_id,
        formation=item.formation,
        session_id=item.session.rsplit("/", 1)[-1],
        created_at=item.created_at,
    )
