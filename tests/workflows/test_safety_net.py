"""An unexpected error in a turn's workflow code fails that turn, never the session."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from keel.formation import formation_from_data
from keel.names import Activities
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.workflows.helpers import chat, start_session
from worker import build_workers

FAULT = "fault injected into the workflow"


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        # A bug in workflow code, reached only when the model asks for `lookup`.
        if input.activity == Activities.CALL_TOOL and input.args[0].name == "lookup":
            raise RuntimeError(FAULT)
        return super().start_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _FaultInjector(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _Inbound


async def test_a_fault_in_workflow_code_fails_the_turn_and_the_session_goes_on(
    client: Client, settings: Settings, store: TranscriptStore, caplog: pytest.LogCaptureFixture
) -> None:
    formation = formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
        },
        env={},
    )
    workers = build_workers(
        client, settings=settings, formation=formation, store=store, interceptors=[_FaultInjector()]
    )
    caplog.set_level(logging.ERROR, logger=workflow.logger.name)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        handle = await start_session(client, settings, formation)
        failed = await chat(handle, '[[call lookup {"invoice": 7}]]')
        after = await chat(handle, "are you still there?")
        state = await handle.state()
    assert failed.status == "failed" and failed.error_id is not None
    assert failed.error == f"internal error {failed.error_id}: RuntimeError"
    assert after.status == "completed" and after.message is not None
    assert after.message.content == "echo: are you still there?"
    assert state.turn_count == 2
    logged = [r for r in caplog.records if failed.error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and FAULT in str(logged[0].exc_info[1])
