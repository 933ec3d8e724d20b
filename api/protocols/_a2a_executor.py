"""The A2A agent executor: a task is one Keel turn, relayed as a2a-sdk task events.

Status `working` from `turn.started`, the answer as one artifact (token deltas
append to it, `message.completed` replaces it with the whole text), status
`input-required` while a tool call waits for approval (decided through Keel's
approvals API), then `completed`, `failed` or `canceled`. `execute` follows the turn
to its end even past `input-required`, so a blocking send answers at the approval and
the task still completes once it is decided. Cancelling the task cancels the turn.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from a2a.helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import TaskState
from a2a.utils.errors import A2AError, InternalError, InvalidParamsError, TaskNotCancelableError
from temporalio.client import Client

from api import _sessions
from api._auth import Caller
from api._turns import TurnRequest, TurnStream, follow_turn
from api.deps import AppState
from api.problems import Problem
from api.protocols._gate import CALLER_KEY
from keel.session import TurnResult

TURN_KEY = "keel.turn"
"""Where the request's checked turn (`A2ATurn`) waits in the call context's state."""
CANCEL_FEEDBACK = "The A2A client cancelled this task."


@dataclass(frozen=True)
class A2ATurn:
    """A message, checked, and where it goes."""

    text: str
    agent: str
    session_id: str | None
    """The session it continues; None for a new one."""
    new_session_id: str | None
    """The id of the new session (the task's contextId); None when continuing."""


def a2a_error(problem: Problem) -> A2AError:
    """A Keel problem in a2a-sdk's words: the caller's fault, or the server's."""
    if problem.status < 500:
        return InvalidParamsError(message=problem.detail)
    return InternalError(message=problem.detail)


class KeelExecutor(AgentExecutor):
    """Runs each A2A task as a turn of a Keel session (contextId = session id, task id = turn id).

    Args:
        state: the API's shared state.
    """

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._cancelled: set[str] = set()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Send the message as a turn and relay its events until it ends."""
        turn: A2ATurn = context.call_context.state[TURN_KEY]
        task_id, context_id = _ids(context)
        request = TurnRequest(
            text=turn.text,
            session_id=turn.session_id,
            agent=turn.agent if turn.session_id is None else None,
            turn_id=task_id,
            new_session_id=turn.new_session_id,
        )
        async with AsyncExitStack() as stack:
            try:
                followed = await follow_turn(
                    self._state, self._client(), _caller(context), request, stack
                )
            except Problem as problem:
                raise a2a_error(problem) from None
            history = [context.message] if context.message else []
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
            relay = _Relay(TaskUpdater(event_queue, task_id, context_id), followed, self._cancelled)
            await relay.run()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the task's turn: a model or tool call under way stops, its pending
        approvals close as cancelled, and the turn ends `cancelled` in the session."""
        task_id, context_id = _ids(context)
        self._cancelled.add(task_id)  # the relay stops at its next event
        try:
            await _sessions.cancel_turn(
                self._state, self._client(), _caller(context), context_id, task_id
            )
        except Problem as problem:
            self._cancelled.discard(task_id)
            if problem.type_ == "turn-ended":
                raise TaskNotCancelableError(message=problem.detail) from None
            raise a2a_error(problem) from None
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.cancel(updater.new_agent_message([new_text_part(CANCEL_FEEDBACK)]))

    def _client(self) -> Client:
        if self._state.client is None:
            raise InternalError(message="Temporal is not reachable yet")
        return self._state.client


class _Relay:
    """One turn's events as task updates."""

    def __init__(self, updater: TaskUpdater, turn: TurnStream, cancelled: set[str]) -> None:
        self._updater = updater
        self._turn = turn
        self._cancelled = cancelled
        self._answer_id = f"{turn.sent.turn_id}-answer"
        self._attempt: tuple[Any, Any] | None = None
        self._pending: set[str] = set()

    async def run(self) -> None:
        try:
            async for out in self._turn.events:
                if self._cancelled_now() or await self._on(out.event.type, out.event.data):
                    return
            # The stream ended early (Temporal or the worker went away): the turn's outcome.
            handle = self._turn.handle
            result = await _sessions.session_call(handle, handle.wait_turn(self._turn.sent.turn_id))
            if not self._cancelled_now():
                await self._end(result)
        finally:
            self._cancelled.discard(self._turn.sent.turn_id)

    async def _on(self, type_: str, data: dict[str, Any]) -> bool:
        """Relay one event; True once the task has ended."""
        updater = self._updater
        if type_ == "turn.started":
            await updater.start_work()
        elif type_ == "message.delta":
            attempt = (data.get("step"), data.get("attempt"))
            # A retried model call streams its answer again: start the artifact over.
            await self._answer(data.get("text", ""), append=attempt == self._attempt, last=False)
            self._attempt = attempt
        elif type_ == "message.completed":
            await self._answer(data.get("content", ""), append=False, last=True)
        elif type_ == "approval.requested":
            self._pending.add(data["approval_id"])
            await updater.requires_input(self._message(_approval_text(self._turn, data), data))
        elif type_ == "approval.decided":
            self._pending.discard(data["approval_id"])
            if not self._pending:
                await updater.start_work()
        elif type_ == "turn.completed":
            await updater.complete()
            return True
        elif type_ == "turn.failed":
            await updater.failed(self._message(f"The turn failed: {data.get('error')}"))
            return True
        elif type_ == "turn.cancelled":  # cancelled through Keel's API, or interrupted
            await updater.cancel(self._message("The turn was cancelled."))
            return True
        elif type_ == "session.closed":
            await updater.failed(self._message("The session was closed."))
            return True
        return False

    async def _end(self, result: TurnResult) -> None:
        if result.status == "completed" and result.message is not None:
            await self._answer(result.message.content, append=False, last=True)
            await self._updater.complete()
        elif result.status == "cancelled":
            await self._updater.cancel(self._message("The turn was cancelled."))
        else:
            await self._updater.failed(self._message(f"The turn {result.status}: {result.error}"))

    async def _answer(self, text: str, *, append: bool, last: bool) -> None:
        await self._updater.add_artifact(
            [new_text_part(text)],
            artifact_id=self._answer_id,
            name="answer",
            append=append,
            last_chunk=last,
        )

    def _message(self, text: str, metadata: dict[str, Any] | None = None) -> Any:
        return self._updater.new_agent_message([new_text_part(text)], metadata=metadata)

    def _cancelled_now(self) -> bool:
        return self._turn.sent.turn_id in self._cancelled


def _approval_text(turn: TurnStream, data: dict[str, Any]) -> str:
    url = f"/v1/sessions/{turn.sent.session_id}/approvals/{data['approval_id']}"
    arguments = json.dumps(data.get("arguments", {}), ensure_ascii=False)
    return (
        f"Tool {data.get('tool')!r} waits for approval (arguments {arguments}):"
        f" decide with POST {url} (approve, reject or revise)."
    )


def _ids(context: RequestContext) -> tuple[str, str]:
    assert context.task_id and context.context_id, "the request handler sets both ids"
    return context.task_id, context.context_id


def _caller(context: RequestContext) -> Caller:
    caller: Caller = context.call_context.state[CALLER_KEY]
    return caller
