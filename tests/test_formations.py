"""Two formations on one Temporal namespace: each runs, lists and reaches only its own sessions.

`alpha` and `beta` have different agents and Python tools; each has its own `keel worker`
process and its own API (in this process), all against the tests' one dev server and its
`default` namespace, with the task queues their ids give them. A third formation shows the
upgrade of one whose sessions started before queue names carried its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from api import create_app
from keel.formation import Formation, formation_from_data
from keel.names import SESSION_WORKFLOW, Activities
from keel.session import SessionResult, new_session_input, session_workflow_id
from keel.session_handle import SessionHandle
from keel.settings import ACTIVITIES_TASK_QUEUE, SESSIONS_TASK_QUEUE, Settings
from keel.store import TranscriptStore, open_store
from keel.temporal import (
    AGENT_ATTR,
    FORMATION_ATTR,
    PENDING_APPROVALS_ATTR,
    TENANT_ATTR,
    USER_ATTR,
    TaskQueues,
    task_queues,
)
from tests.conftest import running_workers
from tests.procs import WORKER_READY, KeelProcess, worker_process, write_formation
from tests.runs import activities, session_runs

TENANT = "default"
"""The tenant of callers without keys: both formations' sessions share it."""


def _formation(id_: str, agent: str, tool: str, module: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "models": {"default": {"provider": "scripted"}},
        "agents": [{"name": agent, "tools": [tool]}],
        "python_tools": [module],
        # One trigger name and time in both: their schedules and runs must not collide.
        "triggers": [
            {
                "name": "daily",
                "agent": agent,
                "template": f"[[say {id_} report]]",
                "schedule": "0 9 * * *",
            }
        ],
        **extra,
    }


ALPHA = _formation(
    "alpha", "clerk", "lookup", "tests.fakes.tools", approvals={"tools": {"lookup": "always"}}
)
BETA = _formation("beta", "forecaster", "forecast", "tests.fakes.forecast")


@dataclass
class Side:
    """One formation's worker process and API."""

    formation: Formation
    queues: TaskQueues
    worker: KeelProcess
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def _api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, formation, client=client, store=store)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http


@pytest.fixture(scope="module")
async def sides(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Side]]:
    client = temporal_env.client
    address = client.service_client.config.target_host
    async with contextlib.AsyncExitStack() as stack:
        started: dict[str, Side] = {}
        for data in (ALPHA, BETA):
            directory = tmp_path_factory.mktemp(data["id"])
            # No queue named: each process takes its formation's, as in production.
            settings = Settings(
                temporal_address=address, data_dir=directory / "data", max_sessions_per_user=0
            )
            path, formation = write_formation(directory, data)
            worker = worker_process(directory, settings, path)
            stack.callback(worker.stop)
            store = open_store(formation.memory.store, data_dir=settings.resolved_data_dir)
            stack.push_async_callback(store.close)
            http = await stack.enter_async_context(_api(client, settings, formation, store))
            started[formation.id] = Side(formation, task_queues(settings, formation), worker, http)
        await asyncio.gather(*(s.worker.start(ready=WORKER_READY) for s in started.values()))
        try:
            yield started
        finally:
            for id_ in started:  # the dev server outlives this module
                await client.get_schedule_handle(f"keel/{id_}/daily").delete()


def _identities(history: WorkflowHistory) -> Iterator[str]:
    """Of the workers that ran the run's workflow tasks and activities."""
    for event in history.events:
        if event.HasField("workflow_task_started_event_attributes"):
            yield event.workflow_task_started_event_attributes.identity
    yield from (a.identity for a in activities(history) if a.outcome != "open")


async def _ran_only_on(client: Client, side: Side, workflow_id: str) -> list[str]:
    """Check the session ran on the formation's queues and worker; the activities it ran."""
    handle = SessionHandle(client, workflow_id)
    described = await handle.workflow.describe()
    assert described.task_queue == side.queues.sessions
    assert described.typed_search_attributes.get(FORMATION_ATTR) == side.formation.id
    names = []
    for run in await session_runs(client, handle):
        assert {i.split("@")[0] for i in _identities(run)} == {str(side.worker.pid)}
        for activity in activities(run):
            assert activity.task_queue in (side.queues.sessions, side.queues.activities)
            names.append(activity.name)
    return names


async def _pending_approval(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    for _ in range(200):
        listed = (await http.get(f"/v1/sessions/{session_id}/approvals")).json()
        if listed["approvals"]:
            return dict(listed["approvals"][0])
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _turn(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(200):
        turn = (await http.get(url)).json()
        if turn["status"] in ("completed", "failed"):
            return dict(turn)
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not end")


async def _listed(http: httpx.AsyncClient, *expected: str, **params: str) -> list[dict[str, Any]]:
    """`GET /v1/sessions`, once it lists `expected` (visibility lags a start by a moment)."""
    for _ in range(100):
        listed = (await http.get("/v1/sessions", params={"limit": 200, **params})).json()
        if set(expected) <= {s["id"] for s in listed["sessions"]}:
            return list(listed["sessions"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{expected} not listed")


def _ids(sessions: list[dict[str, Any]]) -> set[str]:
    return {s["id"] for s in sessions}


def _not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["type"] == "/problems/session-not-found"


async def test_each_formation_runs_its_sessions_with_its_own_workers_agents_and_tools(
    sides: dict[str, Side], client: Client
) -> None:
    alpha, beta = sides["alpha"], sides["beta"]
    assert alpha.queues.sessions == "keel-sessions.alpha"
    assert beta.queues.activities == "keel-activities.beta"

    forecast = await beta.http.post(
        "/v1/chat", json={"message": '[[call forecast {"city": "Oslo"}]]'}
    )
    assert forecast.json()["message"]["content"] == "tool results: forecast -> rain in Oslo"
    # Alpha's tool, gated by alpha's approvals, decided through alpha's API.
    accepted = (
        await alpha.http.post(
            "/v1/chat", json={"message": '[[call lookup {"invoice": 7}]]', "mode": "async"}
        )
    ).json()
    approval = await _pending_approval(alpha.http, accepted["session_id"])
    url = f"/v1/sessions/{accepted['session_id']}/approvals/{approval['id']}"
    assert (await alpha.http.post(url, json={"decision": "approve"})).status_code == 200
    turn = await _turn(alpha.http, accepted["url"])
    assert turn["message"]["content"] == "tool results: lookup -> invoice 7: 40 EUR"

    # Each formation knows only its own agents.
    assert (await alpha.http.post("/v1/sessions", json={"agent": "forecaster"})).status_code == 404
    pairs = [(alpha, accepted["session_id"]), (beta, forecast.json()["session_id"])]
    for side, session_id in pairs:
        session = (await side.http.get(f"/v1/sessions/{session_id}")).json()
        assert session["agent"] == side.formation.agents[0].name
        assert Activities.CALL_TOOL in await _ran_only_on(client, side, session["workflow_id"])


async def test_an_api_lists_and_reaches_only_its_own_formation_s_sessions(
    sides: dict[str, Side],
) -> None:
    alpha, beta = sides["alpha"], sides["beta"]
    waiting = (
        await alpha.http.post(
            "/v1/chat", json={"message": '[[call lookup {"invoice": 8}]]', "mode": "async"}
        )
    ).json()
    mine = waiting["session_id"]
    approval = await _pending_approval(alpha.http, mine)
    theirs = (await beta.http.post("/v1/sessions", json={})).json()["id"]
    await _listed(beta.http, theirs)  # in visibility, so absent from alpha's list for good reason

    for side, own, other in ((alpha, mine, theirs), (beta, theirs, mine)):
        listed = await _listed(side.http, own)
        assert other not in _ids(listed)
        assert {s["agent"] for s in listed} == {side.formation.agents[0].name}
        _not_found(await side.http.get(f"/v1/sessions/{other}"))
        _not_found(await side.http.post("/v1/chat", json={"session_id": other, "message": "hi"}))
        _not_found(await side.http.get(f"/v1/sessions/{other}/approvals"))
        _not_found(await side.http.get(f"/v1/sessions/{other}/events"))
        _not_found(await side.http.delete(f"/v1/sessions/{other}"))
    decide = f"/v1/sessions/{mine}/approvals/{approval['id']}"
    _not_found(await beta.http.post(decide, json={"decision": "approve"}))
    inbox = {a["session_id"] for a in (await beta.http.get("/v1/approvals")).json()["approvals"]}
    assert mine not in inbox
    assert mine in {
        a["session_id"] for a in (await alpha.http.get("/v1/approvals")).json()["approvals"]
    }

    # Still waiting, and still alpha's to decide.
    assert (await alpha.http.post(decide, json={"decision": "reject"})).status_code == 200
    assert (await _turn(alpha.http, waiting["url"]))["status"] == "completed"


async def test_schedules_of_both_formations_coexist_and_run_on_their_own_workers(
    sides: dict[str, Side], client: Client
) -> None:
    runs: dict[str, str] = {}
    for id_ in sides:
        handle = client.get_schedule_handle(f"keel/{id_}/daily")
        await handle.trigger()
        for _ in range(100):
            if recent := (await handle.describe()).info.recent_actions:
                runs[id_] = recent[0].action.workflow_id
                break
            await asyncio.sleep(0.1)
    assert set(runs) == {"alpha", "beta"}
    for id_, workflow_id in runs.items():
        assert f"/scheduled-{id_}-daily-" in workflow_id
        handle = client.get_workflow_handle(workflow_id, result_type=SessionResult)
        result = await handle.result()
        assert result.last_turn is not None and result.last_turn.message is not None
        assert result.last_turn.message.content == f"{id_} report"
        await _ran_only_on(client, sides[id_], workflow_id)
    session_ids = {id_: workflow_id.rsplit("/", 1)[-1] for id_, workflow_id in runs.items()}
    for id_, side in sides.items():
        other = "beta" if id_ == "alpha" else "alpha"
        listed = _ids(await _listed(side.http, session_ids[id_], user_id="schedule"))
        assert session_ids[other] not in listed


async def _session_from_before(client: Client, formation: Formation) -> str:
    """A session started as the API did before sessions carried their formation."""
    session_id = uuid.uuid4().hex
    agent = formation.default_agent
    await client.start_workflow(
        SESSION_WORKFLOW,
        new_session_input(
            formation,
            agent,
            tenant=TENANT,
            user_id="old-user",
            activities_task_queue=ACTIVITIES_TASK_QUEUE,
            session_id=session_id,
        ),
        id=session_workflow_id(TENANT, session_id),
        task_queue=SESSIONS_TASK_QUEUE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(TENANT_ATTR, TENANT),
                SearchAttributePair(USER_ATTR, "old-user"),
                SearchAttributePair(AGENT_ATTR, agent.name),
                SearchAttributePair(PENDING_APPROVALS_ATTR, 0),
            ]
        ),
    )
    return session_id


async def test_a_formation_upgraded_with_legacy_queues_serves_its_sessions_from_before(
    sides: dict[str, Side], client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = formation_from_data(
        {"id": "gamma", "models": {"default": {"provider": "echo"}}, "agents": [{"name": "old"}]},
        env={},
    )
    legacy = settings.model_copy(
        update={
            "sessions_task_queue": None,
            "activities_task_queue": None,
            "serve_legacy_queues": True,
        }
    )
    old = await _session_from_before(client, formation)
    async with (
        running_workers(client, legacy, formation, store),
        _api(client, legacy, formation, store) as upgraded,
        _api(
            client, legacy.model_copy(update={"serve_legacy_queues": False}), formation, store
        ) as plain,
    ):
        answer = await upgraded.post("/v1/chat", json={"session_id": old, "message": "still here?"})
        assert answer.json()["message"]["content"] == "echo: still here?", answer.text
        new = (await upgraded.post("/v1/chat", json={"message": "new"})).json()["session_id"]
        await _listed(upgraded, old, new)
        # Without the setting, and from any other formation, the old session is none of theirs.
        for http in (plain, sides["alpha"].http):
            _not_found(await http.get(f"/v1/sessions/{old}"))
            assert old not in _ids((await http.get("/v1/sessions")).json()["sessions"])
        await _listed(plain, new)
        described = await SessionHandle.of(client, TENANT, new).workflow.describe()
        assert (described.task_queue, described.typed_search_attributes.get(FORMATION_ATTR)) == (
            "keel-sessions.gamma",
            "gamma",
        )
        for session_id in (old, new):
            assert (await upgraded.delete(f"/v1/sessions/{session_id}")).status_code == 200
