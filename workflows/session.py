"""SessionWorkflow: one durable conversation, its turns run one after another in the main loop."""

from __future__ import annotations

import json
from collections import deque
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows._approvals import ApprovalGate
from workflows._delegation import delegation_specs
from workflows._memory import SessionMemory
from workflows._messaging import messaging_specs
from workflows._model import call_model
from workflows._tools import ToolRunner, error_text

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream

    from activities.llm import CallModelInput, CallModelResult
    from activities.messaging import TOPIC_SIGNAL, TopicMessage
    from activities.tools import CallToolResult
    from keel.approvals import Approval, ApprovalDecisionInput
    from keel.events import (
        EVENTS_TOPIC,
        EventPayload,
        MessageCompleted,
        SessionClosed,
        SessionEvent,
        TurnCompleted,
        TurnFailed,
        TurnStarted,
    )
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

TOPIC_IDS_KEPT = 1000
"""Recent topic message ids, to drop a publish that a retry delivered twice."""
TURNS_KEPT_IN_STATE = 50
"""Older turns of a run are answered from the transcript store, not the workflow."""
TURNS_CARRIED = 10
"""Ended turns handed to the next run: a client may ask for one just after the hand-over."""
EVENTS_KEPT_AT_CONTINUE = 100
"""Step events carried into the next run, so a client that dropped just before
continue-as-new still resumes without a gap. Bounded, so history stays constant."""


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
        self._session_id = input.session_id or workflow.info().workflow_id.rsplit("/", 1)[-1]
        self._next_seq = carried.next_seq
        self._turn_count = carried.turn_count
        self._usage = carried.usage
        self._queue: deque[QueuedTurn] = deque(carried.queued)
        self._unsynced: list[Message] = list(carried.unsynced)
        self._run_messages: list[Message] = list(carried.unsynced)
        self._turns: dict[str, TurnResult] = {t.turn_id: t for t in carried.recent_turns}
        self._turns.update(
            {q.turn_id: TurnResult(turn_id=q.turn_id, status="queued") for q in carried.queued}
        )
        self._turns_this_run = 0
        self._current: str | None = None
        self._last_turn: TurnResult | None = None
        self._closing = False
        self._continuing = False
        self._gate = ApprovalGate(input.approvals)
        self._topic_messages_seen: deque[str] = deque(maxlen=TOPIC_IDS_KEPT)
        self._memory = SessionMemory(input, carried.summary_upto, self._publish)
        self._tools = ToolRunner(input, self._gate, self._publish, self._memory)
        # WorkflowStream registers its own signal/update/query handlers and must
        # be built here, in __init__, before any of them can be delivered.
        self._stream = WorkflowStream(prior_state=carried.stream)
        self._events = self._stream.topic(EVENTS_TOPIC, type=SessionEvent)
        prior = carried.stream
        self._offset = prior.base_offset + len(prior.log) if prior else 0

    @workflow.run
    async def run(self, input: StartSessionInput) -> SessionResult:
        """Run turns as messages arrive until the session is closed."""
        if input.initial_message is not None and input.carried is None:
            self._enqueue(SendMessageInput(text=input.initial_message))
        while True:
            await workflow.wait_condition(
                lambda: bool(self._queue) or self._closing or self._should_continue_as_new()
            )
            if self._closing:
                break  # `close` has cancelled the queued turns.
            if self._should_continue_as_new():
                # Before the next queued turn, not once the queue drains: under steady
                # traffic it never does, and history would grow without bound.
                await self._continue_as_new()
            else:
                await self._run_turn(self._queue.popleft())
                self._closing = self._closing or (input.close_when_idle and not self._queue)
        self._publish(SessionClosed(reason="closed"), None)
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SessionResult(
            turn_count=self._turn_count, usage=self._usage, last_turn=self._last_turn
        )

    # -- messages -----------------------------------------------------------

    @workflow.update(name="send_message")
    def send_message(self, input: SendMessageInput) -> SendMessageResult:
        """Queue a user message as a new turn; answers at once."""
        return self._enqueue(input)

    @workflow.update(name="chat")
    async def chat(self, input: SendMessageInput) -> TurnResult:
        """Queue a message and answer when its turn ends: one round trip for a sync chat.

        Returns early, unfinished, if this run continues as new; `wait_turn` then
        follows the turn into the next run.
        """
        return await self._wait_for(self._enqueue(input).turn_id)

    @chat.validator
    def _validate_chat(self, input: SendMessageInput) -> None:
        self._validate_send_message(input)

    def _enqueue(self, input: SendMessageInput) -> SendMessageResult:
        turn_id = input.turn_id or str(workflow.uuid4())
        self._queue.append(
            QueuedTurn(
                turn_id=turn_id,
                text=input.text,
                received_at=workflow.now(),
                response_schema=input.response_schema,
            )
        )
        self._turns[turn_id] = TurnResult(turn_id=turn_id, status="queued")
        return SendMessageResult(turn_id=turn_id, stream_offset=self._offset)

    @send_message.validator
    def _validate_send_message(self, input: SendMessageInput) -> None:
        options = self._input.options
        if input.user_id is not None and input.user_id != self._input.user_id:
            # The same answer as for a session that does not exist: ids are not confirmed.
            raise ApplicationError("no such session", type="SessionNotFound")
        if input.turn_id is not None and input.turn_id in self._turns:
            raise ApplicationError(f"turn {input.turn_id} exists", type="DuplicateTurn")
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

    @workflow.signal(name=TOPIC_SIGNAL)
    def topic_message(self, message: TopicMessage) -> None:
        """A message on a topic this session subscribes to: it becomes a turn, once."""
        if self._closing or message.message_id in self._topic_messages_seen:
            return
        self._topic_messages_seen.append(message.message_id)
        self._enqueue(
            SendMessageInput(
                text=f"[message on topic {message.topic!r} from session"
                f" {message.from_session}] {message.text}"
            )
        )

    @workflow.update(name="wait_turn")
    async def wait_turn(self, input: WaitTurnInput) -> TurnResult:
        """Wait until a turn ends. Returns early, unfinished, if this run continues as new."""
        return await self._wait_for(input.turn_id)

    async def _wait_for(self, turn_id: str) -> TurnResult:
        await workflow.wait_condition(
            lambda: self._turns[turn_id].status in FINAL_TURN_STATUSES or self._continuing
        )
        return self._turns[turn_id]

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

    @workflow.signal(name="approval")
    def approval(self, input: ApprovalDecisionInput) -> None:
        """Decide an approval (the Temporal CLI/UI path); a stale or unknown id is ignored."""
        try:
            self._gate.decide(input, by="signal")
        except ApplicationError as err:
            workflow.logger.warning("approval signal ignored: %s", err.message)

    @workflow.update(name="respond_to_approval")
    async def respond_to_approval(self, input: ApprovalDecisionInput) -> Approval:
        """Decide an approval (the REST path); revised arguments must fit the tool's schema."""
        await self._gate.check_arguments(input, task_queue=self._input.activities_task_queue)
        return self._gate.decide(input, by="update")

    @respond_to_approval.validator
    def _validate_respond_to_approval(self, input: ApprovalDecisionInput) -> None:
        self._gate.check(input)

    @workflow.query(name="state")
    def state(self) -> SessionState:
        """Status, current and queued turns, recent turn results, usage."""
        return SessionState(
            status="closing" if self._closing else "active",
            agent=self._input.agent.name,
            current_turn=self._current,
            queued_turns=[q.turn_id for q in self._queue],
            turns=list(self._turns.values())[-TURNS_KEPT_IN_STATE:],
            pending_approvals=self._gate.pending(),
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
        self._publish(TurnStarted(agent=self._input.agent.name), turn.turn_id)
        self._append(
            Message(
                seq=self._next_seq,
                role="user",
                content=queued.text,
                turn_id=turn.turn_id,
                created_at=queued.received_at,
            )
        )
        await self._memory.before_turn(turn.turn_id, queued.text, self._next_seq)
        try:
            answer = await self._agent_loop(turn, queued.response_schema)
        except (ActivityError, _TurnFailed) as err:
            turn.status = "failed"
            turn.error = error_text(err) if isinstance(err, ActivityError) else str(err)
            self._publish(TurnFailed(error=turn.error), turn.turn_id)
        else:
            turn.status = "completed"
            turn.message = AssistantReply(content=answer.content)
            if queued.response_schema is not None:
                turn.data = json.loads(answer.content)
            self._publish(MessageCompleted(seq=answer.seq, content=answer.content), turn.turn_id)
            # The turn is completed for callers waiting on it; its events end after the write.
            await self._memory.after_turn(turn.turn_id, queued.text, answer.content)
            self._publish(TurnCompleted(usage=turn.usage), turn.turn_id)
        # Not in a `finally`: when a worker evicts this workflow mid-turn the
        # coroutine is closed, and workflow calls there would fail.
        self._current = None
        self._turn_count += 1
        self._turns_this_run += 1
        self._usage = self._usage + turn.usage
        self._last_turn = turn
        self._forget_old_turns()
        self._gate.forget_old()
        workflow.set_current_details(f"{self._turn_count} turns; idle")

    async def _agent_loop(
        self, turn: TurnResult, response_schema: dict[str, Any] | None
    ) -> Message:
        """Model, then tools, then model again, until an answer or `max_steps`."""
        agent = self._input.agent
        for step in range(1, agent.max_steps + 1):
            last_step = step == agent.max_steps
            step_result = await self._call_model(turn.turn_id, step, last_step, response_schema)
            turn.usage = turn.usage + step_result.usage
            answer = step_result.message
            self._append(answer)
            self._unsynced.clear()
            if not answer.tool_calls:
                return answer
            if last_step:
                # Every call needs a result, or vendors refuse the transcript later.
                for call in answer.tool_calls:
                    self._append(self._tool_message(turn.turn_id, call, _STEP_LIMIT_RESULT))
            else:
                async for call, result in self._tools.run(turn, answer.tool_calls):
                    self._append(self._tool_message(turn.turn_id, call, result))
        raise _TurnFailed(
            f"the agent reached its step limit (max_steps={agent.max_steps}) without a final answer"
        )

    async def _call_model(
        self,
        turn_id: str,
        step: int,
        last_step: bool,
        response_schema: dict[str, Any] | None,
    ) -> CallModelResult:
        agent = self._input.agent
        call = CallModelInput(
            session=workflow.info().workflow_id,
            turn_id=turn_id,
            step=step,
            upto_seq=self._unsynced[0].seq if self._unsynced else self._next_seq,
            new_messages=self._unsynced,
            model=agent.model,
            system_prompt=agent.system_prompt,
            # The last step offers no tools, so the model has to answer.
            tools=[] if last_step else [*agent.tools, *self._memory.tools],
            extra_tools=[]
            if last_step
            else [*delegation_specs(agent, self._input.team), *messaging_specs(agent.tools)],
            buffer_messages=agent.buffer_messages,
            owner=self._memory.scope,
            memories=self._memory.recalled,
            response_schema=response_schema,
            stream_offset=self._offset,
        )
        return await call_model(self._input, call, self._run_messages)

    def _tool_message(self, turn_id: str, call: ToolCall, result: CallToolResult) -> Message:
        return Message(
            seq=self._next_seq,
            role="tool",
            content=result.content,
            turn_id=turn_id,
            created_at=workflow.now(),
            tool_call_id=call.id,
            name=call.name,
            is_error=result.is_error,
            ref=result.ref,
        )

    # -- bookkeeping --------------------------------------------------------

    def _append(self, message: Message) -> None:
        """Record a message of this run. The LLM activity stores the unsynced ones."""
        self._next_seq = message.seq + 1
        self._run_messages.append(message)
        if message.role != "assistant":
            self._unsynced.append(message)

    def _publish(self, payload: EventPayload, turn_id: str | None) -> None:
        """Append a step event to the session's stream (no history cost: subscribers poll)."""
        event = SessionEvent.of(
            payload, session_id=self._session_id, turn_id=turn_id, ts=workflow.now()
        )
        # Redacted here, the one place every event passes, so none escapes it.
        event.data = redact_event_data(event.type, event.data, self._input.privacy)
        self._events.publish(event)
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

    async def _continue_as_new(self) -> NoReturn:
        """Start a fresh run of this session, carrying queued turns, so history stays bounded."""
        self._continuing = True
        # Subscribers re-attach to the new run from their last offset; only a
        # short tail travels to it, for clients that are reconnecting.
        self._stream.truncate(self._offset - EVENTS_KEPT_AT_CONTINUE)
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        ended = [t for t in self._turns.values() if t.status in FINAL_TURN_STATUSES]
        carried = CarriedState(
            next_seq=self._next_seq,
            turn_count=self._turn_count,
            usage=self._usage,
            queued=list(self._queue),
            unsynced=self._unsynced,
            stream=self._stream.get_state(),
            summary_upto=self._memory.summary_upto,
            recent_turns=ended[-TURNS_CARRIED:],
        )
        workflow.continue_as_new(self._input.model_copy(update={"carried": carried}))


_STEP_LIMIT_RESULT = CallToolResult(
    content="not run: the agent reached its step limit", is_error=True
)


class _TurnFailed(Exception):
    """A turn that ends without an answer for a reason of its own (not an activity failure)."""
