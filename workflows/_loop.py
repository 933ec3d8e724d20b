"""A turn's steps: the model, then its tool calls, then the model again; and the messages
of the run they add, which the LLM activity stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow

from workflows._cancel import TurnCancel
from workflows._delegation import delegation_specs
from workflows._memory import SessionMemory
from workflows._messaging import messaging_specs
from workflows._model import call_model
from workflows._step import Step
from workflows._tools import ToolRunner
from workflows._turns import TurnError

with workflow.unsafe.imports_passed_through():
    from keel.contracts.llm import CallModelInput, CallModelResult
    from keel.contracts.tools import CallToolResult
    from keel.messages import Message, ToolCall
    from keel.session import CarriedState, QueuedTurn, StartSessionInput, TurnResult

_STEP_LIMIT_RESULT = CallToolResult(
    content="not run: the agent reached its step limit", is_error=True
)
_CANCELLED_RESULT = CallToolResult(content="not finished: the turn was cancelled", is_error=True)


class AgentLoop:
    """Runs a turn's steps until an answer or `max_steps`.

    History stays constant per turn: a model call carries only the messages the
    store has not seen yet (`unsynced`), never the transcript.

    Args:
        input: the session's input.
        carried: what the previous run handed over.
        tools: runs a step's tool calls.
        memory: the session's memory steps (recalled memories, built-in tools).
        offset: the session's stream offset now, for the model's token deltas.
        cancel: the running turn's cancel, checked after every model call.
    """

    def __init__(
        self,
        input: StartSessionInput,
        carried: CarriedState,
        tools: ToolRunner,
        memory: SessionMemory,
        offset: Callable[[], int],
        cancel: TurnCancel,
    ) -> None:
        self._input = input
        self._tools = tools
        self._memory = memory
        self._offset = offset
        self._cancel = cancel
        self.next_seq = carried.next_seq
        self._turn_seq = carried.next_seq
        """The seq of the running turn's first message."""
        self.unsynced: list[Message] = list(carried.unsynced)
        """Messages the store may lack: the next model call carries them."""
        self._run_messages: list[Message] = list(carried.unsynced)
        """Every message of this run, to re-seed a store that lost them."""

    def append(self, message: Message) -> None:
        """Record a message of this run. The LLM activity stores the unsynced ones."""
        self.next_seq = message.seq + 1
        self._run_messages.append(message)
        if message.role != "assistant":
            self.unsynced.append(message)

    def user_message(self, queued: QueuedTurn) -> None:
        """Record the message a turn answers."""
        self._turn_seq = self.next_seq
        self.append(
            Message(
                seq=self.next_seq,
                role="user",
                content=queued.text,
                turn_id=queued.turn_id,
                created_at=queued.received_at,
            )
        )

    async def run(self, turn: TurnResult, queued: QueuedTurn) -> CallModelResult:
        """Model, then tools, then model again; the final model step's result."""
        agent = self._input.agent
        for number in range(1, agent.max_steps + 1):
            self._cancel.check(turn.turn_id)
            step = Step(turn.turn_id, number, tuple(queued.ask_chain))
            last_step = number == agent.max_steps
            result = await self._call_model(step, last_step, queued.response_schema)
            turn.usage = turn.usage + result.usage
            # A call that ended as it was cancelled: its answer is not the turn's.
            self._cancel.check(turn.turn_id)
            answer = result.message
            self.append(answer)
            self.unsynced.clear()
            if not answer.tool_calls:
                return result
            if last_step:
                # Every call needs a result, or vendors refuse the transcript later.
                for call in answer.tool_calls:
                    self.append(self._tool_message(turn.turn_id, call, _STEP_LIMIT_RESULT))
            else:
                async for call, tool_result in self._tools.run(turn, step, answer.tool_calls):
                    if tool_result.usage is not None:
                        # A delegated specialist's tokens are the turn's too.
                        turn.usage = turn.usage + tool_result.usage
                    self.append(self._tool_message(turn.turn_id, call, tool_result))
        raise TurnError(
            f"the agent reached its step limit (max_steps={agent.max_steps}) without a final answer"
        )

    def note(self, turn_id: str, text: str) -> None:
        """Tell the model something in the running turn, as a user message (a planner's
        feedback and its steps' results): the next model call carries it."""
        self.append(
            Message(
                seq=self.next_seq,
                role="user",
                content=text,
                turn_id=turn_id,
                created_at=workflow.now(),
            )
        )

    async def answer(
        self,
        turn: TurnResult,
        step: Step,
        response_schema: dict[str, Any] | None,
    ) -> CallModelResult:
        """One model call offered no tools (a planner's plan, or its answer)."""
        self._cancel.check(turn.turn_id)
        result = await self._call_model(step, True, response_schema)
        turn.usage = turn.usage + result.usage
        self._cancel.check(turn.turn_id)
        self.append(result.message)
        self.unsynced.clear()
        return result

    def rollback(self) -> int:
        """Forget the running turn's messages; its first seq, which the next turn takes."""
        start = self._turn_seq
        self.next_seq = start
        self.unsynced = [m for m in self.unsynced if m.seq < start]
        self._run_messages = [m for m in self._run_messages if m.seq < start]
        return start

    def close_calls(self, turn_id: str) -> None:
        """Give each call of the turn's last model step that has no result one saying the
        turn was cancelled: vendors refuse a transcript with a call left unanswered."""
        steps = [i for i, m in enumerate(self._run_messages) if m.role == "assistant"]
        if not steps or self._run_messages[steps[-1]].turn_id != turn_id:
            return
        last = self._run_messages[steps[-1]]
        answered = {m.tool_call_id for m in self._run_messages[steps[-1] + 1 :]}
        for call in last.tool_calls:
            if call.id not in answered:
                self.append(self._tool_message(turn_id, call, _CANCELLED_RESULT))

    async def _call_model(
        self, step: Step, last_step: bool, response_schema: dict[str, Any] | None
    ) -> CallModelResult:
        agent = self._input.agent
        call = CallModelInput(
            session=workflow.info().workflow_id,
            turn_id=step.turn_id,
            step=step.number,
            upto_seq=self.unsynced[0].seq if self.unsynced else self.next_seq,
            new_messages=self.unsynced,
            model=agent.model,
            model_name=agent.model_name,
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
            stream_offset=self._offset(),
            # Data for the activity's usage records only: replay never compares inputs.
            agent=agent.name,
        )
        return await call_model(self._input, call, self._run_messages)

    def _tool_message(self, turn_id: str, call: ToolCall, result: CallToolResult) -> Message:
        return Message(
            seq=self.next_seq,
            role="tool",
            content=result.content,
            turn_id=turn_id,
            created_at=workflow.now(),
            tool_call_id=call.id,
            name=call.name,
            is_error=result.is_error,
            ref=result.ref,
            usage=result.usage,
            approval=result.approval,
        )
