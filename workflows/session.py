"""SessionWorkflow: one durable conversation, its turns run one after another in the main loop."""

from __future__ import annotations

from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream

    from activities.llm import CALL_MODEL, PREFIX_MISSING, CallModelInput, CallModelResult
    from activities.tools import CALL_TOOL, CallToolInput, CallToolResult
    from keel.events import EVENTS_TOPIC, EventType, SessionEvent
    from keel.messages import Message, ToolCall
    from keel.redaction import redact_event_data
    from keel.session import (
        FINAL_TURN_STATUSES,
        SESSION_WORKFLOW,
        AssistantReply,
        CarriedState,
        CloseSessionInput,
        CloseSessionResult,
        QueuedTurn,
        SendMessageInput,
        SendMessageResult,
        SessionResult,
        SessionState,
        StartSessionInput,
        TurnResult,
        WaitTurnInput,
    )

HEARTBEAT_TIMEOUT = timedelta(seconds=15)
TOOL_TIMEOUT = timedelta(minutes=5)
TOOL_RETRY = RetryPolicy(maximum_attempts=3)
TURNS_KEPT_IN_STATE = 50
"""Older turns of a run are answered from the transcript store, not the workflow."""
RESULT_GLIMPSE_CHARS = 500
"""What a `tool.result` event shows of the output; the transcript store keeps all of it."""


@workflow.defn(name=SESSION_WORKFLOW)
class SessionWorkflow:
    """A conversation with one agent. Messages arrive by Update; turns run one at a time.

    History stays constant per turn: the workflow never passes the transcript
    into activities, only the messages the store has not seen yet.
    """

    @workflow.init
    def __init__(self, input: StartSessionInput) -> None:
        carried = input.carried or CarriedState()
        self._input = input
        self._next_seq = carried.next_seq
        self._turn_count = carried.turn_count
        self._usage = carried.usage
        self._queue: deque[QueuedTurn] = deque(carried.queued)
        self._unsynced: list[Message] = list(carried.unsynced)
        self._run_messages: list[Message] = list(carried.unsynced)
        self._turns: dict[str, TurnResult] = {
            q.turn_id: TurnResult(turn_id=q.turn_id, status="queued") for q in carried.queued
        }
        self._turns_this_run = 0
        self._current: str | None = None
        self._closing = False
        self._continuing = False
        # WorkflowStream registers its own signal/update/query handlers and must
        # be built here, in __init__, before any of them can be delivered.
        self._stream = WorkflowStream(prior_state=carried.stream)
        self._events = self._stream.topic(EVENTS_TOPIC, type=SessionEvent)
        prior = carried.stream
        self._offset = prior.base_offset + len(prior.log) if prior else 0

    @workflow.run
    async def run(self, input: StartSessionInput) -> SessionResult:
        """Run turns as messages arrive until the session is closed."""
        while True:
            await workflow.wait_condition(
                lambda: bool(self._queue) or self._closing or self._should_continue_as_new()
            )
            if self._queue:
                await self._run_turn(self._queue.popleft())
            elif self._closing:
                break
            else:
                await self._continue_as_new()
        self._publish("session.closed", None, {"reason": "closed"})
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SessionResult(turn_count=self._turn_count, usage=self._usage)

    # -- messages -----------------------------------------------------------

    @workflow.update(name="send_message")
    def send_message(self, input: SendMessageInput) -> SendMessageResult:
        """Queue a user message as a new turn; answers at once."""
        turn_id = str(workflow.uuid4())
        self._queue.append(QueuedTurn(turn_id=turn_id, text=input.text, received_at=workflow.now()))
        self._turns[turn_id] = TurnResult(turn_id=turn_id, status="queued")
        return SendMessageResult(turn_id=turn_id, stream_offset=self._offset)

    @send_message.validator
    def _validate_send_message(self, input: SendMessageInput) -> None:
        options = self._input.options
        if self._closing:
            raise ApplicationError("the session is closed", type="SessionClosed")
        if not input.text.strip():
            raise ApplicationError("the message is empty", type="InvalidMessage")
        if len(input.text) > options.max_message_chars:
            raise ApplicationError(
                f"the message has {len(input.text)} characters;"
                f" the limit is {options.max_message_chars}",
                type="MessageTooLong",
            )
        if options.on_busy == "reject" and (self._current or self._queue):
            raise ApplicationError("a turn is already running", type="SessionBusy")

    @workflow.update(name="wait_turn")
    async def wait_turn(self, input: WaitTurnInput) -> TurnResult:
        """Wait until a turn ends. Returns early, unfinished, if this run continues as new."""
        await workflow.wait_condition(
            lambda: self._turns[input.turn_id].status in FINAL_TURN_STATUSES or self._continuing
        )
        return self._turns[input.turn_id]

    @wait_turn.validator
    def _validate_wait_turn(self, input: WaitTurnInput) -> None:
        if input.turn_id not in self._turns:
            raise ApplicationError(f"no turn {input.turn_id} in this run", type="UnknownTurn")

    @workflow.update(name="close")
    async def close(self, input: CloseSessionInput) -> CloseSessionResult:
        """Close the session: queued turns are cancelled, a running turn finishes."""
        self._closing = True
        for queued in self._queue:
            self._turns[queued.turn_id].status = "cancelled"
        self._queue.clear()
        await workflow.wait_condition(lambda: self._current is None)
        return CloseSessionResult()

    @close.validator
    def _validate_close(self, input: CloseSessionInput) -> None:
        if self._closing:
            raise ApplicationError("the session is closed", type="SessionClosed")

    @workflow.query(name="state")
    def state(self) -> SessionState:
        """Status, current and queued turns, recent turn results, usage."""
        return SessionState(
            status="closing" if self._closing else "active",
            agent=self._input.agent.name,
            current_turn=self._current,
            queued_turns=[q.turn_id for q in self._queue],
            turns=list(self._turns.values())[-TURNS_KEPT_IN_STATE:],
            usage=self._usage,
            turn_count=self._turn_count,
            stream_offset=self._offset,
        )

    # -- a turn -------------------------------------------------------------

    async def _run_turn(self, queued: QueuedTurn) -> None:
        turn = self._turns[queued.turn_id]
        turn.status = "running"
        self._current = turn.turn_id
        workflow.set_current_details(f"turn {self._turn_count + 1}: running")
        self._publish("turn.started", turn.turn_id, {"agent": self._input.agent.name})
        self._append(
            Message(
                seq=self._next_seq,
                role="user",
                content=queued.text,
                turn_id=turn.turn_id,
                created_at=queued.received_at,
            )
        )
        try:
            answer = await self._agent_loop(turn)
        except ActivityError as err:
            turn.status = "failed"
            turn.error = _error_text(err)
            self._publish("turn.failed", turn.turn_id, {"error": turn.error})
        else:
            turn.status = "completed"
            turn.message = AssistantReply(content=answer.content)
            self._publish(
                "message.completed",
                turn.turn_id,
                {"seq": answer.seq, "role": "assistant", "content": answer.content},
            )
            self._publish("turn.completed", turn.turn_id, {"usage": turn.usage.model_dump()})
        # Not in a `finally`: when a worker evicts this workflow mid-turn the
        # coroutine is closed, and workflow calls there would fail.
        self._current = None
        self._turn_count += 1
        self._turns_this_run += 1
        self._usage = self._usage + turn.usage
        self._forget_old_turns()
        workflow.set_current_details(f"{self._turn_count} turns; idle")

    async def _agent_loop(self, turn: TurnResult) -> Message:
        """Model, then tools, then model again, until an answer or `max_steps`."""
        agent = self._input.agent
        for step in range(1, agent.max_steps + 1):
            # On the last step the model gets no tools, so it has to answer.
            tools = agent.tools if step < agent.max_steps else []
            result = await self._call_model(turn.turn_id, step, tools)
            turn.usage = turn.usage + result.usage
            answer = result.message
            self._append(answer)
            self._unsynced.clear()
            if not answer.tool_calls:
                return answer
            for call in answer.tool_calls:
                self._append(await self._call_tool(turn.turn_id, call))
        raise AssertionError("unreachable: the last step has no tools")  # pragma: no cover

    async def _call_model(self, turn_id: str, step: int, tools: list[str]) -> CallModelResult:
        agent = self._input.agent
        call = CallModelInput(
            session=workflow.info().workflow_id,
            turn_id=turn_id,
            step=step,
            upto_seq=self._unsynced[0].seq if self._unsynced else self._next_seq,
            new_messages=self._unsynced,
            model=agent.model,
            system_prompt=agent.system_prompt,
            tools=tools,
            buffer_messages=agent.buffer_messages,
        )
        try:
            return await self._execute_model_call(call)
        except ActivityError as err:
            if not (isinstance(err.cause, ApplicationError) and err.cause.type == PREFIX_MISSING):
                raise
        # The store lost what it held (or is new): hand it everything this run knows.
        workflow.logger.warning("transcript store lacks the prefix; re-seeding it")
        first = self._run_messages[0].seq if self._run_messages else self._next_seq
        return await self._execute_model_call(
            call.model_copy(
                update={"upto_seq": first, "new_messages": self._run_messages, "reseed": True}
            )
        )

    async def _execute_model_call(self, call: CallModelInput) -> CallModelResult:
        model = call.model
        return await workflow.execute_activity(
            CALL_MODEL,
            call,
            result_type=CallModelResult,
            task_queue=model.task_queue or self._input.activities_task_queue,
            start_to_close_timeout=timedelta(seconds=model.timeout_s + 30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=model.max_attempts),
            summary=(
                f"llm {model.provider}/{model.model or self._input.agent.model_name}"
                f" step {call.step}"
            ),
        )

    async def _call_tool(self, turn_id: str, call: ToolCall) -> Message:
        self._publish(
            "tool.call",
            turn_id,
            {"call_id": call.id, "tool": call.name, "arguments": call.arguments},
        )
        if call.name in self._input.agent.tools:
            try:
                result = await workflow.execute_activity(
                    CALL_TOOL,
                    CallToolInput(
                        session=workflow.info().workflow_id,
                        turn_id=turn_id,
                        call_id=call.id,
                        name=call.name,
                        arguments=call.arguments,
                    ),
                    result_type=CallToolResult,
                    task_queue=self._input.activities_task_queue,
                    start_to_close_timeout=TOOL_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=TOOL_RETRY,
                    summary=f"tool {call.name}",
                )
            except ActivityError as err:
                # A tool that times out or keeps failing is the model's problem
                # to work around, not a reason to fail the turn.
                result = CallToolResult(content=f"tool failed: {_error_text(err)}", is_error=True)
        else:
            result = CallToolResult(
                content=f"tool {call.name!r} is not available to agent {self._input.agent.name!r}",
                is_error=True,
            )
        self._publish(
            "tool.result",
            turn_id,
            {
                "call_id": call.id,
                "tool": call.name,
                "is_error": result.is_error,
                "content": result.content[:RESULT_GLIMPSE_CHARS],
            },
        )
        return Message(
            seq=self._next_seq,
            role="tool",
            content=result.content,
            turn_id=turn_id,
            created_at=workflow.now(),
            tool_call_id=call.id,
            name=call.name,
            is_error=result.is_error,
        )

    # -- bookkeeping --------------------------------------------------------

    def _append(self, message: Message) -> None:
        """Record a message of this run. The LLM activity stores the unsynced ones."""
        self._next_seq = message.seq + 1
        self._run_messages.append(message)
        if message.role != "assistant":
            self._unsynced.append(message)

    def _publish(self, type: EventType, turn_id: str | None, data: dict[str, object]) -> None:
        self._events.publish(
            SessionEvent(
                type=type,
                session_id=self._input.session_id,
                turn_id=turn_id,
                ts=workflow.now(),
                # Redacted here, the one place every event passes, so none escapes it.
                data=redact_event_data(type, data, self._input.privacy),
            )
        )
        self._offset += 1

    def _forget_old_turns(self) -> None:
        while len(self._turns) > TURNS_KEPT_IN_STATE:
            oldest = next(iter(self._turns))
            if self._turns[oldest].status not in FINAL_TURN_STATUSES:
                break
            del self._turns[oldest]

    def _should_continue_as_new(self) -> bool:
        return (
            workflow.info().is_continue_as_new_suggested()
            or self._turns_this_run >= self._input.options.continue_as_new_after_turns
        )

    async def _continue_as_new(self) -> None:
        """Start a fresh run of this session, so history stays bounded."""
        self._continuing = True
        # Subscribers re-attach to the new run from their last offset; the
        # events they have already read need not travel to it.
        self._stream.truncate(self._offset)
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        carried = CarriedState(
            next_seq=self._next_seq,
            turn_count=self._turn_count,
            usage=self._usage,
            queued=list(self._queue),
            unsynced=self._unsynced,
            stream=self._stream.get_state(),
        )
        workflow.continue_as_new(self._input.model_copy(update={"carried": carried}))


def _error_text(err: ActivityError) -> str:
    """The innermost failure's message: what went wrong, not how it was wrapped."""
    cause: BaseException = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return str(cause)
