"""Schemathesis against /openapi.json: no 5xx, and every answer is one the schema declares."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as fuzz_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.client import Client

from api import create_app
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers

ADMIN = "fuzz-admin-0123456789abcdef"
EXAMPLES = 25
"""Per operation and generation mode: bounded, so the run stays under a minute."""
REQUEST_TIMEOUT_S = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def test_fuzzing_finds_no_server_error_and_no_undeclared_answer(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    # No rate limit: the fuzzer should reach the routes, not the bucket. A tenant of its
    # own keeps its many sessions out of other tests' session counts.
    tenant = f"fuzz-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(
        update={
            "admin_keys": f"{ADMIN}@{tenant}",
            "rate_limit_per_minute": 0,
            "max_sessions_per_user": 20,
        }
    )
    app = create_app(settings, formation, client=client, store=store)
    schema = schemathesis.openapi.from_dict(app.openapi())
    loop = asyncio.get_running_loop()
    stopped = threading.Event()
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):

        def send(case: Case) -> None:
            """Send a case to the app on the test's loop (workers run there) and check it."""
            if stopped.is_set():  # the test is over (timed out): end the thread too
                raise RuntimeError("the fuzz test has stopped")
            request = case.as_transport_kwargs(
                base_url="http://keel", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            if isinstance(request.get("data"), bytes | str):
                request["content"] = request.pop("data")
            request.pop("cookies", None)
            sent = asyncio.run_coroutine_threadsafe(http.request(**request), loop)
            response = sent.result(REQUEST_TIMEOUT_S)
            case.validate_response(response, checks=CHECKS)

        def fuzz() -> None:
            # Hypothesis drives sync tests: it runs in a thread while the loop serves.
            for result in schema.get_all_operations():
                operation = result.ok()
                if operation.path.endswith("/events"):
                    continue  # endless SSE streams: tests/api/test_events.py covers them
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        _each_case(operation.as_strategy(generation_mode=mode), send)()
                    except Unsatisfiable:
                        # An operation with no input to get wrong has no negative cases.
                        if mode is not GenerationMode.NEGATIVE:
                            raise

        try:
            await asyncio.to_thread(fuzz)
        finally:
            stopped.set()


def _each_case(strategy: Any, send: Callable[[Case], None]) -> Callable[[], None]:
    @fuzz_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        send(case)

    return run
