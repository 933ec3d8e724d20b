"""Start sessions straight against Temporal, without the API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client
from temporalio.common import TypedSearchAttributes

from keel.approvals import Approval
from keel.formation import Formation
from keel.names import SESSION_WORKFLOW
from keel.session import SendMessageInput, TurnResult, new_session_input, session_workflow_id
from keel.session_handle import SessionHandle
from keel.settings import Settings


async def start_session(
    client: Client,
    settings: Settings,
    formation: Formation,
    *,
    agent: str | None = None,
    user_id: str = "tester",
    search_attributes: TypedSearchAttributes | None = None,
    **options: Any,
) -> SessionHandle:
    """Start a session workflow for `agent` (default: the formation's) and `user_id`.

    Without `search_attributes` it starts with none, as a client of an older build would.
    """
    config = formation.agent(agent) if agent else formation.default_agent
    session_id = uuid.uuid4().hex
    start = new_session_input(
        formation,
        config,
        tenant="test",
        user_id=user_id,
        activities_task_queue=settings.activities_task_queue,
        session_id=session_id,
    )
    start.options = start.options.model_copy(update=options)
    started = await client.start_workflow(
        SESSION_WORKFLOW,
        start,
        id=session_workflow_id("test", session_id),
        task_queue=settings.sessions_task_queue,
        search_attributes=search_attributes,
    )
    return SessionHandle(client, started.id)


async def chat(handle: SessionHandle, text: str) -> TurnResult:
    """Send a message and wait for its turn to end."""
    return await wait_for_turn(handle, await send(handle, text))


async def wait_for_turn(handle: SessionHandle, turn_id: str) -> TurnResult:
    """Wait for a turn to end, following the session across continue-as-new."""
    return await handle.wait_turn(turn_id)


async def send(handle: SessionHandle, text: str) -> str:
    """Send a message; the id of the turn it queued."""
    return (await handle.send_message(SendMessageInput(text=text))).turn_id


async def pending_approval(handle: SessionHandle) -> Approval:
    """The one approval the session waits for, once it asks (within 30 s)."""
    for _ in range(300):
        if pending := (await handle.state()).pending_approvals:
            [approval] = pending
            return approval
        await asyncio.sleep(0.1)
    raise AssertionError("no approval was requested")
