"""SessionWorkflow: one durable conversation, its turns run one after another in the main loop."""

from __future__ import annotations

import asyncio
from collections import deque

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import _carry, _metrics
from workflows._approvals import ApprovalGate
from workflows._cancel import TurnCancel
from workflows._control import TurnControl
from workflows._loop import AgentLoop
from workflows._memory import SessionMemory
from workflows._patches import PLANNER_PATCH, STARTED_IN_SEND_PATCH, patched
from workflows._planner import PlannerTurn
from workflows._plans import PlanBook
from workflows._queue import TurnQueue
from workflows._tools import ToolRunner
from workflows._turns import TurnBook, TurnError, failure_of

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream

    from keel.approvals import Approval, ApprovalDecisionInput
    from keel.contracts.messaging import TopicMessage
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
    from keel.names import SESSION_WORKFLOW, Queries, Rejections, Signals, Updates
    from keel.plans import Plan, PlanDecisionInput
    from keel.redaction import redact_event_data
    from keel.session import (
        FINAL_TURN_STATUSES,
        AssistantReply,
        CancelTurnInput,
        CancelTurnResult,
        CarriedState,
        CloseSessionInput,
        CloseSessionResult,
        QueuedTurn,
        SendMessageInput,
        SendMessageResult,
        SessionResult,
        SessionState,
        StartSessionInput,
        StreamedEvent,
        TurnResult,
        WaitTurnInput,
    )

TOPIC_IDS_KEPT = 1000
"""Recent topic message ids, to drop a publish that a retry delivered twice."""
TURNS_IN_STATE = 50
"""Turns the `state` query lists; older ones are answered from the memo and the store."""


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
        self._queue = TurnQueue(carried.queued)
        self._turns_this_run = 0
        self._current: str | None = None
        self._last_turn: TurnResult | None = None
        self._started: StreamedEvent | None = None
        """The latest turn's `turn.started`."""
        self._closing = False
        self._continuing = False
        self._gate = ApprovalGate(input.approvals, on_change=self._summary_changed)
        self._plans = PlanBook(
            carried.plans, input.approvals, input.agent.routes, on_change=self._summary_changed
        )
        self._book = TurnBook(carried, self._gate, self._plans)
        self._topic_messages_seen: deque[str] = deque(maxlen=TOPIC_IDS_KEPT)
        self._memory = SessionMemory(input, carried.summary_upto, self._publish)
        self._cancel = TurnCancel()
        tools = ToolRunner(input, self._gate, self._publish, self._memory, self._cancel)
        self._loop = AgentLoop(
            input, carried, tools, self._memory, lambda: self._offset, self._cancel
        )
        self._planner = PlannerTurn(input, self._loop, self._plans, self._publish, self._cancel)
        self._control = TurnControl(
            input,
            book=self._book,
            queue=self._queue,
            gate=self._gate,
            cancel=self._cancel,
            loop=self._loop,
            memory=self._memory,
            current=lambda: self._current,
            publish=self._publish,
            on_change=self._summary_changed,
        )
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
            turn_count=self._book.turn_count, usage=self._book.usage, last_turn=self._last_turn
        )

    # -- messages -----------------------------------------------------------

    @workflow.update(name=Updates.SEND_MESSAGE)
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        """Queue a user message as a new turn; answers at once.

        In an idle session the turn starts in this same workflow task, and the
        answer waits for it, to carry its `turn.started`.
        """
        idle = not (self._current or self._queue or self._closing or self._continuing)
        sent = self._enqueue(input)
        if not (idle and patched(STARTED_IN_SEND_PATCH)):
            return sent
        turn = self._book.turns[sent.turn_id]
        await workflow.wait_condition(
            lambda: turn.status != "queued" or self._closing or self._continuing
        )
        started = self._started
        if started is None or started.event.turn_id != sent.turn_id:
            return sent  # it went on to the next run, or the session closed
        return sent.model_copy(update={"started": started})

    @workflow.update(name=Updates.CHAT)
    async def chat(self, input: SendMessageInput) -> TurnResult:
        """Queue a message and answer when its turn ends: one round trip for a sync chat.

        Returns early, unfinished, if this run continues as new; `wait_turn` then
        follows the turn into the next run.
        """
        return await self._wait_for(self._book.turns[self._enqueue(input).turn_id])

    @chat.validator
    def _validate_chat(self, input: SendMessageInput) -> None:
        self._validate_send_message(input)

    def _enqueue(self, input: SendMessageInput) -> SendMessageResult:
        turn_id = input.turn_id or str(workflow.uuid4())
        self._control.interrupt(turn_id)
        queued = QueuedTurn(
            turn_id=turn_id,
            text=input.text,
            received_at=workflow.now(),
            response_schema=input.response_schema,
            ask_chain=input.ask_chain,
        )
        self._queue.append(queued)
        self._book.queued(turn_id)
        return SendMessageResult(turn_id=turn_id, stream_offset=self._offset)

    @send_message.validator
    def _validate_send_message(self, input: SendMessageInput) -> None:
        self._control.admit(input, closing=self._closing)

    @workflow.signal(name=Signals.TOPIC_MESSAGE)
    def topic_message(self, message: TopicMessage) -> None:
        """A message on a topic this session subscribes to: it becomes a turn, once."""
        if self._closing or message.message_id in self._topic_messages_seen:
            return
        self._topic_messages_seen.append(message.message_id)
        text = (
            f"[message on topic {message.topic!r} from session"
            f" {message.from_session}] {message.text}"
        )
        try:
            self._validate_send_message(SendMessageInput(text=text))
        except ApplicationError as err:
            # A signal has no caller to refuse: the message is dropped, and said so.
            workflow.logger.warning("topic message %s dropped: %s", message.message_id, err)
            return
        self._enqueue(SendMessageInput(text=text))

    @workflow.update(name=Updates.WAIT_TURN)
    async def wait_turn(self, input: WaitTurnInput) -> TurnResult:
        """Wait until a turn ends. Returns early, unfinished, if this run continues as new."""
        return await self._wait_for(self._book.turns[input.turn_id])

    @wait_turn.validator
    def _validate_wait_turn(self, input: WaitTurnInput) -> None:
        if input.turn_id not in self._book.turns:
            raise ApplicationError(
                f"no turn {input.turn_id} in this run", type=Rejections.UNKNOWN_TURN
            )

    async def _wait_for(self, turn: TurnResult) -> TurnResult:
        # The turn itself, not its id: it may leave the book (old turns are
        # forgotten) before this waiter wakes.
        await workflow.wait_condition(
            lambda: turn.status in FINAL_TURN_STATUSES or self._continuing
        )
        return turn

    @workflow.update(name=Updates.CLOSE)
    async def close(self, input: CloseSessionInput) -> CloseSessionResult:
        """Close the session: queued turns are cancelled, a running turn finishes."""
        self._closing = True
        for queued in self._queue.clear():
            self._book.turns[queued.turn_id].status = "cancelled"
        await workflow.wait_condition(lambda: self._current is None)
        return CloseSessionResult()

    @close.validator
    def _validate_close(self, input: CloseSessionInput) -> None:
        if self._closing:
            raise ApplicationError("the session is closed", type=Rejections.SESSION_CLOSED)

    @workflow.update(name=Updates.CANCEL_TURN)
    def cancel_turn(self, input: CancelTurnInput) -> CancelTurnResult:
        """Cancel a queued or running turn: it ends `cancelled`, `turn.cancelled` its last event."""
        return self._control.cancel(input)

    @cancel_turn.validator
    def _validate_cancel_turn(self, input: CancelTurnInput) -> None:
        self._control.check(input)

    @workflow.signal(name=Signals.APPROVAL)
    def approval(self, input: ApprovalDecisionInput) -> None:
        """Decide an approval (the Temporal CLI/UI path); a stale or unknown id is ignored."""
        try:
            self._gate.decide(input, by="signal")
        except ApplicationError as err:
            workflow.logger.warning("approval signal ignored: %s", err.message)

    @workflow.update(name=Updates.RESPOND_TO_APPROVAL)
    async def respond_to_approval(self, input: ApprovalDecisionInput) -> Approval:
        """Decide an approval (the REST path); revised arguments must fit the tool's schema."""
        await self._gate.check_arguments(input, task_queue=self._input.activities_task_queue)
        return self._gate.decide(input, by="update")

    @respond_to_approval.validator
    def _validate_respond_to_approval(self, input: ApprovalDecisionInput) -> None:
        self._gate.check(input)

    @workflow.update(name=Updates.DECIDE_PLAN)
    def decide_plan(self, input: PlanDecisionInput) -> Plan:
        """Decide a proposed plan: approve, reject (the planner proposes again, told the
        feedback) or revise (its steps replaced, checked like the planner's)."""
        return self._plans.decide(input, by="update")

    @decide_plan.validator
    def _validate_decide_plan(self, input: PlanDecisionInput) -> None:
        self._plans.check(input)

    @workflow.query(name=Queries.STATE)
    def state(self) -> SessionState:
        """Status, current and queued turns, recent turn results, usage."""
        return SessionState(
            status="closing" if self._closing else "active",
            agent=self._input.agent.name,
            current_turn=self._current,
            queued_turns=self._queued_turn_ids(),
            turns=list(self._book.turns.values())[-TURNS_IN_STATE:],
            pending_approvals=self._gate.pending(),
            usage=self._book.usage,
            turn_count=self._book.turn_count,
            stream_offset=self._offset,
            plans=self._plans.recent(),
        )

    # -- a turn -------------------------------------------------------------

    async def _run_turn(self, queued: QueuedTurn) -> None:
        turn = self._book.turns[queued.turn_id]
        turn.status = "running"
        self._current = turn.turn_id
        self._cancel.turn_started()
        started_at = workflow.now()
        workflow.set_current_details(f"turn {self._book.turn_count + 1}: running")
        self._started = self._append(
            TurnStarted(agent=self._input.agent.name, run_id=workflow.info().run_id), turn.turn_id
        )
        try:
            await self._turn(turn, queued)
        except asyncio.CancelledError:
            if not self._cancel.of(turn.turn_id):
                raise  # the workflow itself is cancelled: Temporal's to handle
        except (ActivityError, TurnError, ApplicationError) as err:
            if not self._cancel.of(turn.turn_id):
                await self._fail(turn, failure_of(err))
        except Exception as err:
            # The safety net: a bug in this code, or input it did not foresee, ends
            # this turn, not the session (an exception would fail every retry of the
            # workflow task). Non-determinism is not an Exception and still reaches
            # Temporal, which retries the task until a fixed worker replays it.
            # A cancelled turn stops with `TurnCancelled`, where the turn checks.
            if not self._cancel.of(turn.turn_id):
                error_id = str(workflow.uuid4())
                workflow.logger.exception("turn %s failed (error id %s)", turn.turn_id, error_id)
                await self._fail(turn, f"internal error {error_id}: {type(err).__name__}", error_id)
        if self._cancel.of(turn.turn_id):
            await self._control.settle(turn)
        self._cancel.turn_ended()
        # Not in a `finally`: when a worker evicts this workflow mid-turn the
        # coroutine is closed, and workflow calls there would fail.
        self._current = None
        self._turns_this_run += 1
        self._last_turn = turn
        self._book.ended(turn, next_seq=self._loop.next_seq)
        self._book.mirror_ended(turn, self._gate.pending(), self._queued_turn_ids())
        _metrics.turn_ended(self._input.agent.name, turn.status, workflow.now() - started_at)
        workflow.set_current_details(f"{self._book.turn_count} turns; idle")

    async def _turn(self, turn: TurnResult, queued: QueuedTurn) -> None:
        self._loop.user_message(queued)
        await self._memory.before_turn(turn.turn_id, queued.text, self._loop.next_seq)
        if self._input.agent.role == "planner" and patched(PLANNER_PATCH):
            result = await self._planner.run(turn, queued)
        else:
            result = await self._loop.run(turn, queued)
        answer = result.message
        turn.status = "completed"
        turn.message = AssistantReply(content=answer.content)
        turn.model = result.model
        if queued.response_schema is not None:
            turn.data = result.data
        self._publish(MessageCompleted(seq=answer.seq, content=answer.content), turn.turn_id)
        # The turn is completed for callers waiting on it; its events end after the write.
        await self._memory.after_turn(turn.turn_id, queued.text, answer.content)
        self._publish(TurnCompleted(usage=turn.usage, model=result.model), turn.turn_id)

    async def _fail(self, turn: TurnResult, error: str, error_id: str | None = None) -> None:
        turn.status = "failed"
        turn.error = error
        turn.error_id = error_id
        self._publish(TurnFailed(error=error, error_id=error_id), turn.turn_id)
        # The store may lack the turn's messages: without this they would ride in
        # every later model call's input while calls keep failing.
        self._loop.unsynced = await self._book.sync(self._input, self._loop.unsynced)

    # -- bookkeeping --------------------------------------------------------

    def _publish(self, payload: EventPayload, turn_id: str | None) -> None:
        """Append a step event to the session's stream (no history cost: subscribers poll)."""
        self._append(payload, turn_id)

    def _append(self, payload: EventPayload, turn_id: str | None) -> StreamedEvent:
        """`_publish`, returning the event as streamed."""
        event = SessionEvent.of(
            payload, session_id=self._session_id, turn_id=turn_id, ts=workflow.now()
        )
        # Redacted here, the one place every event passes, so none escapes it.
        event.data = redact_event_data(event.type, event.data, self._input.privacy)
        self._events.publish(event)
        self._offset += 1
        return StreamedEvent(offset=self._offset - 1, event=event)

    def _summary_changed(self) -> None:
        self._book.mirror(self._gate.pending(), self._queued_turn_ids())

    def _queued_turn_ids(self) -> list[str]:
        return self._queue.ids()

    def _should_continue_as_new(self) -> bool:
        return (
            workflow.info().is_continue_as_new_suggested()
            or self._turns_this_run >= self._input.options.continue_as_new_after_turns
        )

    async def _continue_as_new(self) -> None:
        """Start a fresh run of this session, carrying queued turns, so history stays bounded.

        Returns, without continuing, if the session was closed meanwhile.
        """
        self._continuing = True
        # Subscribers re-attach to the new run from their last offset.
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._closing:
            return  # a `close` accepted while handlers finished: the session ends here
        carried = CarriedState(
            next_seq=self._loop.next_seq,
            turn_count=self._book.turn_count,
            usage=self._book.usage,
            queued=list(self._queue),
            unsynced=self._loop.unsynced,
            stream=_carry.stream_tail(self._stream, self._offset),
            summary_upto=self._memory.summary_upto,
            recent_turns=_carry.recent_turns(self._book.ended_turns()),
            turn_ids=self._book.turn_ids(),
            plans=self._plans.carried(),
        )
        # On a versioned worker a run is pinned to its build; the next run may move to the
        # current one (the session's replay corpus is what makes that safe).
        upgrade = self._input.options.upgrade_on_continue_as_new
        workflow.continue_as_new(
            self._input.model_copy(update={"carried": carried}),
            initial_versioning_behavior=(
                workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE if upgrade else None
            ),
        )
