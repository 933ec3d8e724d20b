"""OpenTelemetry tracing: one trace per turn, from the API request through the workflow to
each activity.

On when the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
is set (and `OTEL_SDK_DISABLED` is not `true`); the OTLP http/protobuf exporter reads the
other `OTEL_*` variables itself. Off, nothing is installed and the tracer the activities
ask for is OpenTelemetry's no-op one.

Spans come from the SDK's own `temporalio.contrib.opentelemetry.TracingInterceptor`. Alone
it parents everything a workflow does on the trace of whoever *started* the workflow: a
session that lives for days would be one trace, and each turn's request only a link. A
turn runs in the session's main loop, not in the update that sent its message, so
`TurnTracingInterceptor` remembers the trace context of each message's update (its update
id is the turn id) and schedules that turn's activities and child workflows under it.
The interceptor creates no workflow span while replaying, so a worker that takes a session
over emits none twice.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import opentelemetry.context
import opentelemetry.trace
import temporalio.worker
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._interceptor import _TracingWorkflowOutboundInterceptor

from keel.names import Updates

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TURN_UPDATES = frozenset({Updates.CHAT, Updates.SEND_MESSAGE})
"""The updates whose id is a turn id: the message of a new turn."""
TURNS_REMEMBERED = 64
"""Trace contexts kept per cached session: its queued turns fit many times over."""

_Carrier = dict[str, str]


def tracing_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process exports traces (an OTLP endpoint is configured)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


def configure_tracing(service_name: str) -> bool:
    """Install the OTLP exporter as this process's tracer provider, if tracing is on.

    Returns:
        Whether tracing is on. `OTEL_SERVICE_NAME` wins over `service_name`.
    """
    if not tracing_enabled():
        return False
    if isinstance(opentelemetry.trace.get_tracer_provider(), TracerProvider):
        return True  # installed already (`keel dev` runs the API and a worker in one process)
    # Imported only when on: the exporter brings an HTTP client with it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    opentelemetry.trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    """Export the spans still buffered (on a clean stop; a killed process loses them)."""
    provider = opentelemetry.trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def client_interceptors() -> list[TracingInterceptor]:
    """The Temporal client's interceptors: the tracing one when tracing is on.

    Workers built on the client inherit it, for workflows and activities alike.
    """
    return [TurnTracingInterceptor()] if tracing_enabled() else []


class TurnTracingInterceptor(TracingInterceptor):
    """The SDK's tracing interceptor, with each turn's work on the trace of its message."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span extern function
        return _TurnWorkflowInboundInterceptor


class _TurnWorkflowInboundInterceptor(TracingWorkflowInboundInterceptor):
    """Remembers the trace context each turn's message came with."""

    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self._turn_carriers: OrderedDict[str, _Carrier] = OrderedDict()
        self._current_turn: _Carrier | None = None
        """The context of the turn whose activity was scheduled last (None: a turn sent
        without one): a child workflow it starts belongs to it."""

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        # Not super().init: that would wrap `outbound` in the SDK's outbound interceptor.
        self.next.init(_TurnWorkflowOutboundInterceptor(outbound, self))

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        header = input.headers.get(self.header_key)
        if input.update in TURN_UPDATES and header is not None:
            self._turn_carriers[input.id] = self.payload_converter.from_payloads([header])[0]
            while len(self._turn_carriers) > TURNS_REMEMBERED:
                self._turn_carriers.popitem(last=False)
        return await super().handle_update_handler(input)

    @contextmanager
    def turn_context(self, args: Any) -> Iterator[None]:
        """Run the block under the trace of the turn that `args` (an input's) belongs to."""
        turn_id = getattr(args[0], "turn_id", None) if args else None
        if isinstance(turn_id, str):
            self._current_turn = self._turn_carriers.get(turn_id)
        carrier = self._current_turn
        if carrier is None:
            yield
            return
        context = self._set_on_context(self.text_map_propagator.extract(carrier))
        token = opentelemetry.context.attach(context)
        try:
            yield
        finally:
            opentelemetry.context.detach(token)


class _TurnWorkflowOutboundInterceptor(_TracingWorkflowOutboundInterceptor):
    """The SDK's outbound interceptor (private, but the one that makes the spans: temporalio
    is pinned to a minor version), with the turn's context attached around each call."""

    root: _TurnWorkflowInboundInterceptor

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with self.root.turn_context(input.args):
            return super().start_activity(input)

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        with self.root.turn_context(input.args):
            return await super().start_child_workflow(input)
