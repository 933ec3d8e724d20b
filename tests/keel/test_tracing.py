"""Traces: one per turn, from the API request to each activity, across real processes.

A worker and an API run as their own processes, exporting to a real OTLP/HTTP receiver
the test starts; workers are SIGKILLed and replaced, as in a crash.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from keel.names import Activities
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.tracing import tracing_enabled
from tests.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.procs import (
    KEEL,
    WORKER_READY,
    KeelProcess,
    free_port,
    keel_process,
    worker_process,
    write_formation,
)
from tests.runs import wait_for_pending
from tests.workflows.helpers import wait_for_turn

ADMIN_KEY = f"trace-admin-{uuid.uuid4().hex}"
SECRET_ARGUMENT = f"private-{uuid.uuid4().hex[:8]}"
FORMATION = {
    "models": {"default": {"provider": "scripted"}},
    "agents": [{"name": "assistant", "tools": ["explode"]}],
    "python_tools": ["tests.fakes.python_tools"],
}
TOOL_TURN = f'[[call explode {{"message": "{SECRET_ARGUMENT}"}}]] [[say it failed]]'
"""A tool turn whose tool fails with its argument as the message."""


class _Traced:
    """Keel's worker and API as processes, exporting their spans to `receiver`."""

    def __init__(self, tmp_path: Path, settings: Settings, receiver: OtlpReceiver) -> None:
        self._tmp_path, self._settings = tmp_path, settings
        self._formation, _ = write_formation(tmp_path, FORMATION)
        self._receiver = receiver
        self.url = ""
        self.processes: list[KeelProcess] = []

    async def worker(self, name: str) -> KeelProcess:
        process = worker_process(self._tmp_path, self._settings, self._formation)
        return await self._started(process, WORKER_READY, name)

    async def api(self) -> KeelProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [*KEEL, "api", "--port", str(port)]
        api = keel_process(self._tmp_path, self._settings, self._formation, argv, name="api")
        return await self._started(api, f"{self.url}/health", "keel-api")

    async def _started(self, process: KeelProcess, ready: str, name: str) -> KeelProcess:
        process.env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=self._receiver.endpoint,
            OTEL_SERVICE_NAME=name,  # which process sent a span
            OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s, so a kill loses little
            KEEL_ADMIN_KEYS=ADMIN_KEY,
        )
        self.processes.append(process)
        return await process.start(ready=ready)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as started:
        yield started


@pytest.fixture
def traced(tmp_path: Path, settings: Settings, receiver: OtlpReceiver) -> Iterator[_Traced]:
    started = _Traced(tmp_path, settings, receiver)
    yield started
    for process in started.processes:
        process.stop()


def _request_span(spans: list[ReceivedSpan], turn_id: str) -> ReceivedSpan | None:
    """The API's span of the `POST /v1/chat` that sent `turn_id`, once it has ended."""
    return next(
        (
            s
            for s in spans
            if s.name == "POST /v1/chat" and s.attributes.get("keel.turn_id") == turn_id
        ),
        None,
    )


def _tree(spans: list[ReceivedSpan]) -> list[str]:
    """`parent > child` for every span whose parent is in the trace, sorted."""
    by_id = {s.span_id: s for s in spans}
    return sorted(f"{by_id[s.parent_id].name} > {s.name}" for s in spans if s.parent_id in by_id)


async def _chat(http: httpx.AsyncClient, session_id: str, message: str) -> str:
    answer = await http.post("/v1/chat", json={"session_id": session_id, "message": message})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed", answer.text
    return str(answer.json()["turn_id"])


def test_tracing_is_on_only_with_an_otlp_endpoint() -> None:
    assert not tracing_enabled({})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_enabled(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )


async def test_each_turn_is_one_trace_from_the_request_to_every_activity(
    client: Client, traced: _Traced, receiver: OtlpReceiver
) -> None:
    first = await traced.worker("worker-1")
    await traced.api()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=traced.url, headers=headers, timeout=60) as http:
        created = await http.post("/v1/sessions", json={})
        session = created.json()
        tool_turn = await _chat(http, session["id"], TOOL_TURN)
        spans = await receiver.wait_for(lambda spans: _request_span(spans, tool_turn) is not None)
        request = _request_span(spans, tool_turn)
        assert request is not None
        trace = receiver.trace(request.trace_id)

        # One trace: the request, the update it sent, and the turn's work under it.
        assert request.parent_id == ""
        assert _tree(trace) == sorted(
            [
                "POST /v1/chat > StartWorkflowUpdate:chat",
                *["StartWorkflowUpdate:chat > StartActivity:keel.llm.call_model"] * 2,
                *["StartActivity:keel.llm.call_model > RunActivity:keel.llm.call_model"] * 2,
                *["RunActivity:keel.llm.call_model > chat scripted"] * 2,
                "StartWorkflowUpdate:chat > StartActivity:keel.tools.call_tool",
                "StartActivity:keel.tools.call_tool > RunActivity:keel.tools.call_tool",
                "RunActivity:keel.tools.call_tool > execute_tool explode",
            ]
        )
        model = next(s for s in trace if s.name == "chat scripted")
        assert model.attributes["gen_ai.operation.name"] == "chat"
        assert model.attributes["gen_ai.provider.name"] == "scripted"
        assert model.attributes["gen_ai.request.model"] == "scripted"
        assert model.attributes["gen_ai.usage.output_tokens"] > 0
        assert model.attributes["keel.turn_id"] == tool_turn
        assert model.attributes["keel.workflow_id"] == session["workflow_id"]
        assert request.attributes["keel.session_id"] == session["id"]
        [tool] = [s for s in trace if s.name == "execute_tool explode"]
        assert tool.attributes["gen_ai.tool.name"] == "explode"
        assert tool.attributes["error.type"] == "tool_error"
        # The session's own spans (its start, each update's handling) are on its start's trace.
        assert not [s for s in trace if s.name.startswith(("StartWorkflow:", "HandleUpdate:"))]

        # A new worker replays the session for its next turn: it emits none of the first's spans.
        first.kill()
        await traced.worker("worker-2")
        second_turn = await _chat(http, session["id"], "and again")
        await receiver.wait_for(lambda spans: _request_span(spans, second_turn) is not None)
        assert {s.service for s in receiver.trace(request.trace_id)} == {"keel-api", "worker-1"}
        second = _request_span(receiver.spans, second_turn)
        assert second is not None and second.trace_id != request.trace_id

    # Neither the key nor a tool's arguments are in any span.
    for span in receiver.spans:
        assert ADMIN_KEY not in repr(span.attributes)
        assert SECRET_ARGUMENT not in repr(span.attributes)


async def test_a_turn_whose_worker_is_killed_mid_call_still_completes_its_trace(
    client: Client, traced: _Traced, receiver: OtlpReceiver
) -> None:
    first = await traced.worker("worker-1")
    await traced.api()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=traced.url, headers=headers, timeout=90) as http:
        session = (await http.post("/v1/sessions", json={})).json()
        handle = SessionHandle(client, session["workflow_id"])
        sent = await http.post(
            "/v1/chat",
            json={"session_id": session["id"], "message": "slow [[sleep 3]]", "mode": "async"},
        )
        turn_id = sent.json()["turn_id"]
        await wait_for_pending(handle, Activities.CALL_MODEL)
        # The call's scheduling has reached the collector before the kill.
        await receiver.wait_for(
            lambda spans: any(s.name == "StartActivity:keel.llm.call_model" for s in spans)
        )
        first.kill()
        await traced.worker("worker-2")
        # Retried once its heartbeat times out (~15 s).
        assert (await wait_for_turn(handle, turn_id)).status == "completed"

    spans = await receiver.wait_for(
        lambda spans: any(
            s.name == "RunActivity:keel.llm.call_model" and s.service == "worker-2" for s in spans
        )
    )
    [scheduled] = [s for s in spans if s.name == "StartActivity:keel.llm.call_model"]
    trace = receiver.trace(scheduled.trace_id)
    [retried] = [s for s in trace if s.name == "RunActivity:keel.llm.call_model"]
    assert retried.service == "worker-2" and retried.parent_id == scheduled.span_id
    [model] = [s for s in trace if s.name == "chat scripted"]
    assert model.parent_id == retried.span_id
    # Its root is the request that sent the message.
    by_id = {s.span_id: s for s in trace}
    root = scheduled
    while root.parent_id in by_id:
        root = by_id[root.parent_id]
    assert (root.name, root.parent_id) == ("POST /v1/chat", "")
