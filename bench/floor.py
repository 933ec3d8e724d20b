"""The floor: the least a durable chat turn on Temporal costs, for Keel to be measured against.

A bare workflow gets each turn by Update and answers it after one activity that
makes the same model call as Keel's LLM activity (a tool turn: the model, a
tool, the model again). No transcript store, no API, no events.
`python -m bench.floor ADDRESS TASK_QUEUE LLM_URL` runs its worker.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import openai
    from openai.types.chat import ChatCompletion

FLOOR_WORKFLOW = "bench.Floor"
TIMEOUT = timedelta(seconds=30)
BUFFER = 50
"""Messages sent to the model per call: Keel's default `memory.buffer_messages`."""


@dataclass
class FloorTurn:
    """A user message; `tool` makes it a tool turn (model, tool, model)."""

    text: str
    tool: bool = False


class FloorActivities:
    """The model call Keel makes, minus the transcript store; and a tool that does nothing.

    The call is the same as Keel's LLM activity makes: the `openai` SDK (one
    pooled client, no SDK retries) posting the last `BUFFER` messages of the
    conversation as built, without `create`'s walk of the body (as Keel does).
    The floor keeps its transcripts in this process's memory: not
    durable, which is exactly the part of Keel's cost it leaves out.
    """

    def __init__(self, llm_url: str) -> None:
        self._client = openai.AsyncOpenAI(base_url=llm_url, api_key="k", max_retries=0)
        self._transcripts: dict[str, list[dict[str, str]]] = defaultdict(list)

    @activity.defn(name="bench.llm")
    async def llm(self, text: str) -> str:
        """Add `text` as a user message and answer it."""
        transcript = self._transcripts[activity.info().workflow_id or ""]
        transcript.append({"role": "user", "content": text})
        completion = await self._client.post(
            "/chat/completions",
            body={"model": "fake", "messages": transcript[-BUFFER:]},
            cast_to=ChatCompletion,
            options={"security": {"bearer_auth": True}},
        )
        answer = completion.choices[0].message.content or ""
        transcript.append({"role": "assistant", "content": answer})
        return answer

    @activity.defn(name="bench.tool")
    async def tool(self, text: str) -> str:
        """A tool that answers at once."""
        return f"tool saw {len(text)} characters"


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    """Turns by Update, one after another, until `stop`."""

    def __init__(self) -> None:
        self._stopped = False

    @workflow.run
    async def run(self) -> None:
        """Wait for `stop`."""
        await workflow.wait_condition(lambda: self._stopped and workflow.all_handlers_finished())

    @workflow.update(name="turn")
    async def turn(self, turn: FloorTurn) -> str:
        """Answer one message (the benchmark sends a workflow one message at a time)."""
        answer = await self._llm(turn.text)
        if turn.tool:
            result = await workflow.execute_activity(
                "bench.tool", answer, start_to_close_timeout=TIMEOUT, result_type=str
            )
            answer = await self._llm(result)
        return answer

    @workflow.signal(name="stop")
    def stop(self) -> None:
        """End the workflow."""
        self._stopped = True

    async def _llm(self, text: str) -> str:
        return await workflow.execute_activity(
            "bench.llm", text, start_to_close_timeout=TIMEOUT, result_type=str
        )


async def run_worker(address: str, task_queue: str, llm_url: str) -> None:
    """Run the floor's worker until killed."""
    client = await Client.connect(address)
    floor = FloorActivities(llm_url)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=[floor.llm, floor.tool],
    )
    sys.stdout.write("floor worker polling\n")
    sys.stdout.flush()
    await worker.run()


if __name__ == "__main__":
    # Through the module, not `__main__`: the workflow sandbox re-imports the
    # workflow's module by name.
    from bench import floor

    asyncio.run(floor.run_worker(*sys.argv[1:4]))
