"""A worker's Prometheus endpoint: Keel's token, cost and turn metrics beside the SDK's own."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.temporal import connect, metrics_runtime
from tests.conftest import running_workers
from tests.metrics import WORKER_METRICS
from tests.procs import WORKER_READY, worker_process, write_formation
from tests.workflows.helpers import chat, start_session

pytestmark = pytest.mark.timeout(120)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _formation() -> Formation:
    return formation_from_data(
        {
            "models": {
                "default": {
                    "provider": "scripted",
                    "pricing": {"input_per_mtok": 1000.0, "output_per_mtok": 4000.0},
                }
            },
            "agents": [{"name": "assistant"}],
        },
        env={},
    )


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        out.append((name, pairs, float(value)))
    return out


def _value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        v for n, have, v in found if n == name and all(have.get(k) == x for k, x in labels.items())
    )


async def test_the_worker_endpoint_counts_each_successful_call_once(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    port = _free_port()
    runtime = metrics_runtime("127.0.0.1", port)
    target = client.service_client.config.target_host
    metered = await connect(target, client.namespace, runtime=runtime)
    formation = _formation()
    async with running_workers(metered, settings, formation, store):
        handle = await start_session(metered, settings, formation)
        # The first attempt fails like a vendor's 503; the retry answers.
        flaky = await chat(handle, "[[fail 503 times=1]] hello there")
        plain = await chat(handle, "and again")
        async with httpx.AsyncClient() as http:
            for _ in range(50):  # the SDK exports what it has every scrape; give it a moment
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                if "keel_turns_total" in text:
                    break
                await asyncio.sleep(0.1)

    found = samples(text)
    assert flaky.status == plain.status == "completed"
    usage = flaky.usage + plain.usage
    labels = {"agent": "assistant", "model": "scripted"}
    assert _value(found, "keel_tokens_total", kind="prompt", **labels) == usage.prompt_tokens
    assert _value(found, "keel_tokens_total", kind="completion", **labels) == (
        usage.completion_tokens
    )
    assert _value(found, "keel_cost_usd_total", **labels) == pytest.approx(usage.cost_usd)
    assert _value(found, "keel_turns_total", agent="assistant", status="completed") == 2
    assert _value(found, "keel_turn_latency_count", agent="assistant") == 2
    # The SDK's own worker metrics share the endpoint: the failed attempt is there.
    assert (
        _value(found, "temporal_activity_execution_failed", activity_type="keel.llm.call_model")
        >= 1
    )
    names = {name for name, _, _ in found}
    missing = {m for m in WORKER_METRICS if m not in names and f"{m}_bucket" not in names}
    assert not missing, f"listed in tests/metrics.py but not exported: {sorted(missing)}"


async def test_keel_worker_serves_metrics_on_the_port_it_is_told(
    tmp_path: Path, client: Client, settings: Settings
) -> None:
    path, formation = write_formation(
        tmp_path,
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant"}],
        },
    )
    port = _free_port()
    worker = worker_process(tmp_path, settings, path, "--metrics-port", str(port))
    try:
        await worker.start(ready=WORKER_READY)
        handle = await start_session(client, settings, formation)
        assert (await chat(handle, "hello")).status == "completed"
        async with httpx.AsyncClient() as http:
            for _ in range(50):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                if "keel_tokens_total" in text:
                    break
                await asyncio.sleep(0.1)
    finally:
        worker.stop()
    names = {name for name, _, _ in samples(text)}
    assert {"keel_tokens_total", "keel_turns_total", "temporal_worker_start"} <= names
