"""Timed turns through Keel's API and through the floor, and what they leave in history."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
from temporalio.client import Client, WorkflowHandle

from bench.fake_llm import TOOL_MARK
from bench.floor import FLOOR_WORKFLOW, FloorTurn
from keel.session import SendMessageInput
from keel.session_handle import SessionHandle


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50, p95 and mean in milliseconds."""
    cuts = statistics.quantiles(samples_s, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(samples_s) * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 2),
    }


async def timed(call: Awaitable[Any]) -> float:
    """Seconds `call` took."""
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def history_bytes(client: Client, workflow_id: str) -> int:
    """Size of the latest run's history, as Temporal stores its events."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(event.ByteSize() for event in history.events)


class KeelSession:
    """A session driven through `POST /v1/chat`, as a client would."""

    def __init__(self, http: httpx.AsyncClient, session: dict[str, Any]) -> None:
        self._http = http
        self.id: str = session["id"]
        self.workflow_id: str = session["workflow_id"]

    @classmethod
    async def create(cls, http: httpx.AsyncClient) -> KeelSession:
        """Start a session with the default agent."""
        response = await http.post("/v1/sessions", json={})
        response.raise_for_status()
        return cls(http, response.json())

    async def turn(self, text: str, *, tool: bool = False) -> None:
        """One synchronous chat turn; fails unless it completed."""
        message = f"{TOOL_MARK} {text}" if tool else text
        response = await self._http.post(
            "/v1/chat", json={"message": message, "session_id": self.id}
        )
        response.raise_for_status()
        assert response.json()["status"] == "completed", response.text


class FloorSession:
    """A floor workflow driven by Update, straight from the client."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handle = handle
        self.workflow_id = handle.id

    @classmethod
    async def create(cls, client: Client, task_queue: str) -> FloorSession:
        """Start a floor workflow."""
        handle = await client.start_workflow(
            FLOOR_WORKFLOW, id=f"floor-{uuid.uuid4().hex}", task_queue=task_queue
        )
        return cls(handle)

    async def turn(self, text: str, *, tool: bool = False) -> None:
        """One turn: the update returns the answer."""
        await self._handle.execute_update("turn", FloorTurn(text, tool), result_type=str)

    async def stop(self) -> None:
        """End the workflow."""
        await self._handle.signal("stop")


Turn = Callable[[str], Awaitable[None]]


class Driven(Protocol):
    """A Keel or a floor session."""

    async def turn(self, text: str, *, tool: bool = False) -> None: ...


async def interleaved_latency(
    sides: Mapping[str, Turn], *, turns: int, between: Callable[[int], Awaitable[None]]
) -> dict[str, list[float]]:
    """Seconds per turn of each side, taking turns one by one so all see the same noise.

    `between(n)` runs outside the timed region after turn `n` (1-based) of every side.
    """
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for n in range(1, turns + 1):
        for name, turn in sides.items():
            samples[name].append(await timed(turn(f"question {n}")))
        await between(n)
    return samples


async def throughput(sessions: Sequence[Driven], turns_each: int) -> float:
    """Turns per second with every session taking its turns one after another, all at once."""

    async def drive(session: Driven) -> None:
        for n in range(turns_each):
            await session.turn(f"busy {n}")

    started = time.perf_counter()
    await asyncio.gather(*(drive(session) for session in sessions))
    return len(sessions) * turns_each / (time.perf_counter() - started)


class KeelDirect:
    """A Keel session driven straight through Temporal, as the API does, without the API."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self._session = SessionHandle(client, workflow_id)

    async def turn(self, text: str, *, tool: bool = False) -> None:
        """The API's sync chat: one `chat` update whose id is the turn id."""
        message = f"{TOOL_MARK} {text}" if tool else text
        turn_id = uuid.uuid4().hex
        result = await self._session.chat(
            SendMessageInput(text=message, turn_id=turn_id), update_id=turn_id
        )
        assert result.status == "completed", result


async def api_round_trip(http: httpx.AsyncClient, _text: str) -> None:
    """An authenticated API request that does no work: what HTTP and FastAPI cost alone."""
    (await http.get("/v1/agents")).raise_for_status()


async def phases(client: Client, workflow_id: str) -> dict[str, float]:
    """Median milliseconds of each model call's phases, from the run's event times.

    `dispatch`: scheduled to started (matching, or none when dispatched eagerly);
    `activity`: started to completed, as the worker ran it; `completion`: from
    the activity's end to the end of the workflow task that handled it.
    """
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    events = history.events
    spans: dict[str, list[float]] = {"dispatch_ms": [], "activity_ms": [], "completion_ms": []}
    scheduled = started = 0.0
    for i, event in enumerate(events):
        kind = event.WhichOneof("attributes")
        at = event.event_time.ToMicroseconds() / 1e6
        if kind == "activity_task_scheduled_event_attributes":
            scheduled = at
        elif kind == "activity_task_started_event_attributes":
            started = at
            spans["dispatch_ms"].append(at - scheduled)
        elif kind == "activity_task_completed_event_attributes":
            spans["activity_ms"].append(at - started)
            done = next(
                e.event_time.ToMicroseconds() / 1e6
                for e in events[i + 1 :]
                if e.WhichOneof("attributes") == "workflow_task_completed_event_attributes"
            )
            spans["completion_ms"].append(done - at)
    return {name: round(statistics.median(s) * 1000, 2) for name, s in spans.items() if s}
