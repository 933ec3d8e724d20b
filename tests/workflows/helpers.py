"""Start sessions straight against Temporal, without the API."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from keel.formation import Formation
from keel.session import (
    SESSION_WORKFLOW,
    SendMessageInput,
    SendMessageResult,
    SessionResult,
    TurnResult,
    WaitTurnInput,
    new_session_input,
    session_workflow_id,
)
from keel.settings import Settings


async def start_session(
    client: Client,
    settings: Settings,
    formation: Formation,
    *,
    agent: str | None = None,
    user_id: str = "tester",
    **options: Any,
) -> WorkflowHandle[Any, Any]:
    """Start a session workflow for `agent` (default: the formation's) and `user_id`."""
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
    return await client.start_workflow(
        SESSION_WORKFLOW,
        start,
        id=session_workflow_id("test", session_id),
        task_queue=settings.sessions_task_queue,
        result_type=SessionResult,
    )


async def chat(handle: WorkflowHandle[Any, Any], text: str) -> TurnResult:
    """Send a message and wait for its turn to end."""
    sent = await handle.execute_update(
        "send_message", SendMessageInput(text=text), result_type=SendMessageResult
    )
    return await wait_for_turn(handle, sent.turn_id)


async def wait_for_turn(handle: WorkflowHandle[Any, Any], turn_id: str) -> TurnResult:
    """Wait for a turn to end, following the session across continue-as-new."""
    while True:
        result = await handle.execute_update(
            "wait_turn", WaitTurnInput(turn_id=turn_id), result_type=TurnResult
        )
        if result.status in ("completed", "failed", "cancelled"):
            return result


async def send(handle: WorkflowHandle[Any, Any], text: str) -> str:
    """Send a message; the id of the turn it queued."""
    sent = await handle.execute_update(
        "send_message", SendMessageInput(text=text), result_type=SendMessageResult
    )
    return sent.turn_id
