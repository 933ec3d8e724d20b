"""Start sessions straight against Temporal, without the API."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from keel.formation import Formation
from keel.session import (
    SESSION_WORKFLOW,
    AgentSnapshot,
    SendMessageInput,
    SendMessageResult,
    SessionResult,
    StartSessionInput,
    TurnResult,
    WaitTurnInput,
    session_workflow_id,
)
from keel.settings import Settings


async def start_session(
    client: Client,
    settings: Settings,
    formation: Formation,
    *,
    agent: str | None = None,
    **options: Any,
) -> WorkflowHandle[Any, Any]:
    """Start a session workflow for `agent` (default: the formation's)."""
    config = formation.agent(agent) if agent else formation.default_agent
    session_id = uuid.uuid4().hex
    start = StartSessionInput(
        session_id=session_id,
        tenant="test",
        user_id="tester",
        agent=AgentSnapshot(
            name=config.name,
            system_prompt=config.system_prompt,
            model_name=config.model,
            model=formation.model_for(config),
            tools=config.tools,
            max_steps=config.max_steps,
        ),
        options=formation.sessions.model_copy(update=options),
        privacy=formation.privacy,
        activities_task_queue=settings.activities_task_queue,
    )
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
    while True:
        result = await handle.execute_update(
            "wait_turn", WaitTurnInput(turn_id=sent.turn_id), result_type=TurnResult
        )
        if result.status in ("completed", "failed", "cancelled"):
            return result
