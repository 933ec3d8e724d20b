"""The sessions `record.py` drives, one per path of `SessionWorkflow`, all through the real API.

Each scenario talks to a served API (sync chat, streams, approvals, close) the
way a client does, checks the answers it gets, and returns the workflow runs
whose histories the corpus keeps: `""` for the scenario's own session, a role
(`specialist`, `asked`, …) for any other. Checks compare answers only, never
timings, so a recording can be re-run on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from keel.approvals import ApprovalDecisionInput
from keel.contracts.tools import call_key
from keel.temporal import TOPICS_ATTR
from tests.api.live import read_events

POLL_UPDATE = "__temporal_workflow_stream_poll"
"""The Update by which an event-stream subscriber long-polls the session's stream."""
POLL_S = 0.05
WAIT_S = 60.0
"""How long a scenario waits for something that takes well under a second when all is well."""


class ScenarioFailed(Exception):
    """A session did not do what today's code does: the recording is not kept."""


@dataclass(frozen=True)
class Run:
    """A workflow run to keep the history of; `run_id` None means its latest run."""

    workflow_id: str
    run_id: str | None = None


@dataclass(frozen=True)
class Live:
    """A served API with its own workers, and the Temporal client beside it."""

    http: httpx.AsyncClient
    client: Client


Recorded = dict[str, Run]
Scenario = Callable[[Live], Awaitable[Recorded]]


def _expect(what: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise ScenarioFailed(f"{what}: expected {expected!r}, got {actual!r}")


def _call(tool: str, **arguments: object) -> str:
    return f"[[call {tool} {json.dumps(arguments)}]]"


async def _ok(response: Awaitable[httpx.Response], status: int = 200) -> dict[str, Any]:
    answered = await response
    if answered.status_code != status:
        raise ScenarioFailed(f"{answered.request.url}: {answered.status_code} {answered.text}")
    body: dict[str, Any] = answered.json()
    return body


async def _eventually(what: str, check: Callable[[], Awaitable[Any]]) -> Any:
    """The first truthy result of `check`, polled; fails after `WAIT_S`."""
    for _ in range(int(WAIT_S / POLL_S)):
        if result := await check():
            return result
        await asyncio.sleep(POLL_S)
    raise ScenarioFailed(f"timed out waiting for {what}")


async def _create(live: Live, agent: str, **body: Any) -> dict[str, Any]:
    return await _ok(live.http.post("/v1/sessions", json={"agent": agent, **body}), 201)


async def _chat(live: Live, message: str, **body: Any) -> dict[str, Any]:
    """A sync `POST /v1/chat` (the workflow's `chat` update); the turn must complete."""
    answer = await _ok(live.http.post("/v1/chat", json={"message": message, **body}))
    _expect("turn status", answer["status"], "completed")
    return answer


async def _close(live: Live, session_id: str) -> None:
    """`DELETE /v1/sessions/{id}`: the workflow's `close` update."""
    await _ok(live.http.delete(f"/v1/sessions/{session_id}"))


async def _pending_approval(live: Live, session_id: str) -> dict[str, Any]:
    async def listed() -> dict[str, Any] | None:
        body = await _ok(live.http.get(f"/v1/sessions/{session_id}/approvals"))
        return body["approvals"][0] if body["approvals"] else None

    approval: dict[str, Any] = await _eventually("an approval", listed)
    return approval


async def _decide(live: Live, session_id: str, approval_id: str, **decision: Any) -> None:
    """`POST …/approvals/{id}`: the workflow's `respond_to_approval` update."""
    url = f"/v1/sessions/{session_id}/approvals/{approval_id}"
    await _ok(live.http.post(url, json=decision))


async def _ended_turn(live: Live, url: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        turn = await _ok(live.http.get(url))
        return turn if turn["status"] in ("completed", "failed", "cancelled") else None

    turn: dict[str, Any] = await _eventually(f"turn {url}", ended)
    _expect("turn status", turn["status"], "completed")
    return turn


async def _gated_turn(live: Live) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An async chat whose tool call waits for approval: the session, the turn, the approval."""
    session = await _create(live, "assistant")
    body = {"message": _call("lookup", invoice=7), "session_id": session["id"], "mode": "async"}
    accepted = await _ok(live.http.post("/v1/chat", json=body), 202)
    return session, accepted, await _pending_approval(live, session["id"])


def _content(turn: dict[str, Any]) -> str:
    content: str = turn["message"]["content"]
    return content


async def steps(client: Client, run: Run) -> set[str]:
    """The activity types a run scheduled and the updates it accepted."""
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    history = await handle.fetch_history()
    names: set[str] = set()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.add(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes
            names.add(accepted.accepted_request.input.name)
    return names


async def _took(live: Live, run: Run, wanted: set[str]) -> None:
    missing = wanted - await steps(live.client, run)
    if missing:
        raise ScenarioFailed(f"{run.workflow_id} lacks {sorted(missing)}")


# -- the scenarios ------------------------------------------------------------


async def sync_chat(live: Live) -> Recorded:
    """Two sync chats (`chat` update), the second in the session the first one started."""
    first = await _chat(live, "hello", agent="assistant")
    _expect("answer", _content(first), "echo: hello")
    again = await _chat(live, "and again", session_id=first["session_id"])
    _expect("answer", _content(again), "echo: and again")
    session = await _ok(live.http.get(f"/v1/sessions/{first['session_id']}"))
    await _close(live, first["session_id"])
    return {"": Run(session["workflow_id"])}


async def streamed_turn(live: Live) -> Recorded:
    """`"stream": true`: token deltas on the in-process bus, step events by stream polls."""
    body = {"message": "hello there world", "agent": "assistant", "stream": True}
    events = await read_events(live.http, "POST", "/v1/chat", json=body)
    kinds = [e.event for e in events if e.id is not None]
    _expect("step events", kinds, ["turn.started", "message.completed", "turn.completed"])
    deltas = "".join(e.json()["text"] for e in events if e.event == "message.delta")
    _expect("streamed text", deltas, "echo: hello there world")
    session_id = events[0].json()["session_id"]
    session = await _ok(live.http.get(f"/v1/sessions/{session_id}"))
    await _close(live, session_id)
    run = Run(session["workflow_id"])
    await _took(live, run, {POLL_UPDATE, "send_message"})
    return {"": run}


async def tool_turn(live: Live) -> Recorded:
    """Two calls of a Python `@keel.tool` in one model step, then the answer."""
    session = await _create(live, "assistant")
    message = f"{_call('add', a=2, b=3)} {_call('add', a=40)}"
    answer = await _chat(live, message, session_id=session["id"])
    _expect("answer", _content(answer), "tool results: add -> 5; add -> 41")
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def approval_approve(live: Live) -> Recorded:
    """A gated call approved by update while a sync chat waits for the turn."""
    session = await _create(live, "assistant")
    body = {"message": _call("lookup", invoice=7), "session_id": session["id"]}
    waiting = asyncio.create_task(_ok(live.http.post("/v1/chat", json=body)))
    approval = await _pending_approval(live, session["id"])
    await _decide(live, session["id"], approval["id"], decision="approve")
    answer = await waiting
    _expect("answer", _content(answer), "tool results: lookup -> invoice 7: 40 EUR")
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def approval_reject(live: Live) -> Recorded:
    """A gated call rejected by update, with feedback for the model."""
    session, accepted, approval = await _gated_turn(live)
    await _decide(live, session["id"], approval["id"], decision="reject", feedback="not now")
    turn = await _ended_turn(live, accepted["url"])
    expected = "tool results: lookup -> The user rejected this call. Reviewer: not now"
    _expect("answer", _content(turn), expected)
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def approval_revise(live: Live) -> Recorded:
    """A gated call revised by update: new arguments (checked by an activity) and feedback."""
    session, accepted, approval = await _gated_turn(live)
    await _decide(
        live,
        session["id"],
        approval["id"],
        decision="revise",
        arguments={"invoice": 8},
        feedback="the other one",
    )
    turn = await _ended_turn(live, accepted["url"])
    expected = (
        "tool results: lookup -> (Run with arguments revised by the user: {'invoice': 8}."
        " Reviewer: the other one)\ninvoice 8: 40 EUR"
    )
    _expect("answer", _content(turn), expected)
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def approval_signal(live: Live) -> Recorded:
    """A gated call approved by the `approval` signal (the Temporal CLI/UI path)."""
    session, accepted, approval = await _gated_turn(live)
    handle = live.client.get_workflow_handle(session["workflow_id"])
    await handle.signal(
        "approval", ApprovalDecisionInput(approval_id=approval["id"], decision="approve")
    )
    turn = await _ended_turn(live, accepted["url"])
    _expect("answer", _content(turn), "tool results: lookup -> invoice 7: 40 EUR")
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def approval_timeout(live: Live) -> Recorded:
    """Nobody decides: the gate's timer fires and `on_timeout` (reject) applies."""
    session, accepted, _ = await _gated_turn(live)
    turn = await _ended_turn(live, accepted["url"])
    expected = "tool results: lookup -> The user rejected this call. Reviewer: no decision within"
    if not _content(turn).startswith(expected):
        raise ScenarioFailed(f"answer: expected {expected!r}…, got {_content(turn)!r}")
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


async def delegation(live: Live) -> Recorded:
    """A coordinator hands the task to its specialist, a child workflow."""
    session = await _create(live, "triage")
    message = _call("billing", message="What do I owe?")
    answer = await _chat(live, message, session_id=session["id"])
    _expect("answer", _content(answer), "tool results: billing -> echo: What do I owe?")
    await _close(live, session["id"])
    workflow_id = session["workflow_id"]
    child = call_key(workflow_id, answer["turn_id"], 1, "call_1")  # step 1: the first model step
    return {"": Run(workflow_id), "specialist": Run(child)}


async def ask_session(live: Live) -> Recorded:
    """`ask_session`: one session asks another and gets its answer."""
    asked = await _create(live, "listener")
    asking = await _create(live, "hub")
    message = _call("ask_session", session_id=asked["id"], message="hi there")
    answer = await _chat(live, message, session_id=asking["id"])
    _expect("answer", _content(answer), "tool results: ask_session -> echo: hi there")
    await _close(live, asking["id"])
    await _close(live, asked["id"])
    return {"": Run(asking["workflow_id"]), "asked": Run(asked["workflow_id"])}


async def publish(live: Live) -> Recorded:
    """`publish` to a topic: the subscriber, found through visibility, takes it as a turn."""
    subscriber = await _create(live, "listener", topics=["news"])
    query = (
        f"WorkflowId = '{subscriber['workflow_id']}' AND {TOPICS_ATTR.name} = 'news'"
        " AND ExecutionStatus = 'Running'"
    )

    async def visible() -> bool:
        return (await live.client.count_workflows(query)).count == 1

    await _eventually("the subscriber in visibility", visible)
    publisher = await _create(live, "hub")
    message = _call("publish", topic="news", message="up")
    answer = await _chat(live, message, session_id=publisher["id"])
    expected = "tool results: publish -> published to 'news': 1 subscribers"
    _expect("answer", _content(answer), expected)

    async def answered() -> list[dict[str, Any]] | None:
        detail = await _ok(live.http.get(f"/v1/sessions/{subscriber['id']}"))
        messages: list[dict[str, Any]] = detail["messages"]
        return messages if len(messages) >= 2 else None

    messages = await _eventually("the subscriber's turn", answered)
    if not messages[1]["content"].startswith("echo: [message on topic 'news' from session"):
        raise ScenarioFailed(f"subscriber answered {messages[1]['content']!r}")
    await _close(live, publisher["id"])
    await _close(live, subscriber["id"])
    return {"": Run(publisher["workflow_id"]), "subscriber": Run(subscriber["workflow_id"])}


async def memory(live: Live) -> Recorded:
    """Vector recall and store every turn, `remember`, and a summary once the window moves."""
    session = await _create(live, "assistant")
    for text in ("My favourite colour is green.", "Which colour do I like?"):
        answer = await _chat(live, text, session_id=session["id"])
        _expect("answer", _content(answer), f"echo: {text}")
    message = f"{_call('remember', fact='The user likes green.')} [[say Noted.]]"
    answer = await _chat(live, message, session_id=session["id"])
    _expect("answer", _content(answer), "Noted.")
    await _close(live, session["id"])
    run = Run(session["workflow_id"])
    await _took(live, run, {"keel.memory.recall", "keel.memory.write", "keel.memory.summarize"})
    return {"": run}


async def continue_as_new(live: Live) -> Recorded:
    """Two turns, continue-as-new, a turn in the second run, close: both runs are kept."""
    first = await _chat(live, "one", agent="assistant")
    session_id = first["session_id"]
    workflow_id = (await _ok(live.http.get(f"/v1/sessions/{session_id}")))["workflow_id"]
    handle = live.client.get_workflow_handle(workflow_id)
    first_run = (await handle.describe()).run_id
    await _chat(live, "two", session_id=session_id)

    async def next_run() -> str | None:
        run_id = (await handle.describe()).run_id
        return run_id if run_id != first_run else None

    # Sent only once the next run exists, so the third turn never straddles the hand-over.
    second_run = await _eventually("the next run", next_run)
    third = await _chat(live, "three", session_id=session_id)
    _expect("answer", _content(third), "echo: three")
    await _close(live, session_id)
    return {"": Run(workflow_id, first_run), "second_run": Run(workflow_id, second_run)}


async def failed_turn(live: Live) -> Recorded:
    """A model that refuses (a 400): the turn fails, its message is stored, the next answers."""
    failed = await _ok(live.http.post("/v1/chat", json={"message": "no [[fail 400]]"}))
    _expect("turn status", failed["status"], "failed")
    again = await _chat(live, "and now?", session_id=failed["session_id"])
    _expect("answer", _content(again), "echo: and now?")
    session = await _ok(live.http.get(f"/v1/sessions/{failed['session_id']}"))
    _expect("messages", [m["content"] for m in session["messages"]][:1], ["no [[fail 400]]"])
    await _close(live, failed["session_id"])
    return {"": Run(session["workflow_id"])}


async def fallback_turn(live: Live) -> Recorded:
    """A model failing past its attempts: its fallback answers; the next turn, the model."""
    fell = await _chat(live, "hi [[fail 503]]")
    _expect("answer", (_content(fell), fell["model"]), ("echo: hi [[fail 503]]", "spare"))
    again = await _chat(live, "and now?", session_id=fell["session_id"])
    _expect("answer", (_content(again), again["model"]), ("echo: and now?", "default"))
    await _close(live, fell["session_id"])
    session = await _ok(live.http.get(f"/v1/sessions/{fell['session_id']}"))
    return {"": Run(session["workflow_id"])}


async def close(live: Live) -> Recorded:
    """One turn, then `DELETE /v1/sessions/{id}` (the `close` update) ends the session."""
    answer = await _chat(live, "bye", agent="assistant")
    _expect("answer", _content(answer), "echo: bye")
    session = await _ok(live.http.get(f"/v1/sessions/{answer['session_id']}"))
    await _close(live, answer["session_id"])
    return {"": Run(session["workflow_id"])}


async def _turn_status(live: Live, url: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        turn = await _ok(live.http.get(url))
        return turn if turn["status"] == status else None

    turn: dict[str, Any] = await _eventually(f"turn {url} {status}", reached)
    return turn


async def _async_chat(live: Live, session_id: str, message: str) -> dict[str, Any]:
    body = {"message": message, "session_id": session_id, "mode": "async"}
    return await _ok(live.http.post("/v1/chat", json=body), 202)


async def _cancel(live: Live, url: str, **body: Any) -> dict[str, Any]:
    """`POST …/turns/{id}/cancel`: the workflow's `cancel_turn` update."""
    return await _ok(live.http.post(f"{url}/cancel", json=body or None), 202)


async def cancelled_turn(live: Live) -> Recorded:
    """Turns cancelled at an approval (kept), in the queue, and mid model call (rolled back)."""
    session = await _create(live, "assistant")
    gated = await _async_chat(live, session["id"], _call("lookup", invoice=7))
    approval = await _pending_approval(live, session["id"])
    await _cancel(live, gated["url"])
    await _turn_status(live, gated["url"], "cancelled")
    late = await live.http.post(
        f"/v1/sessions/{session['id']}/approvals/{approval['id']}", json={"decision": "approve"}
    )
    _expect("a late decision", late.status_code, 409)

    slow = await _async_chat(live, session["id"], "ponder [[sleep 30]]")
    await _turn_status(live, slow["url"], "running")
    queued = await _async_chat(live, session["id"], "queued")
    _expect("queued cancel", (await _cancel(live, queued["url"]))["status"], "cancelled")
    await _cancel(live, slow["url"], rollback=True)
    await _turn_status(live, slow["url"], "cancelled")

    answer = await _chat(live, "after", session_id=session["id"])
    _expect("answer", _content(answer), "echo: after")
    detail = await _ok(live.http.get(f"/v1/sessions/{session['id']}"))
    kept = [m["role"] for m in detail["messages"]]
    _expect("transcript", kept, ["user", "assistant", "tool", "user", "assistant"])
    await _close(live, session["id"])
    run = Run(session["workflow_id"])
    await _took(live, run, {"cancel_turn", "keel.transcript.truncate", "keel.llm.seed_transcript"})
    return {"": run}


async def interrupted_turn(live: Live) -> Recorded:
    """`on_busy: rollback`: a message interrupts a turn mid tool call, which leaves no trace."""
    session = await _create(live, "assistant")
    slow = await _async_chat(live, session["id"], _call("slow", seconds=30))

    async def calling() -> bool:
        detail = await _ok(live.http.get(f"/v1/sessions/{session['id']}"))
        return any(m["tool_calls"] for m in detail["messages"])

    await _eventually("the tool call", calling)
    answer = await _chat(live, "instead", session_id=session["id"])
    _expect("answer", _content(answer), "echo: instead")
    await _turn_status(live, slow["url"], "cancelled")
    detail = await _ok(live.http.get(f"/v1/sessions/{session['id']}"))
    _expect("transcript", [m["content"] for m in detail["messages"]], ["instead", "echo: instead"])
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"])}


def _plan(*steps: dict[str, Any]) -> str:
    """A message whose scripted planner answers with a plan of these steps."""
    return "[[json " + json.dumps({"goal": "a report", "steps": list(steps)}) + "]]"


async def _proposed_plan(live: Live, session_id: str, attempt: int) -> dict[str, Any]:
    async def proposed() -> dict[str, Any] | None:
        body = await _ok(live.http.get(f"/v1/sessions/{session_id}/plans"))
        waiting = [p for p in body["plans"] if p["status"] == "proposed"]
        return waiting[0] if waiting and waiting[0]["attempt"] == attempt else None

    plan: dict[str, Any] = await _eventually(f"plan {attempt}", proposed)
    return plan


async def planner(live: Live) -> Recorded:
    """A planner's gated plan: rejected with feedback, the new one approved; two steps run
    side by side and a third after both, each a child session; then the planner answers."""
    session = await _create(live, "planner")
    a = {"id": "a", "description": "find A [[say A is 1]]", "agent": "billing"}
    b = {"id": "b", "description": "find B [[say B is 2]]", "agent": "listener"}
    c = {"id": "c", "description": "sum up", "agent": "billing", "depends_on": ["a", "b"]}
    accepted = await _async_chat(live, session["id"], _plan(a, b))
    first = await _proposed_plan(live, session["id"], 1)
    url = f"/v1/sessions/{session['id']}/plans"
    feedback = "add a summary " + _plan(a, b, c)
    await _ok(
        live.http.post(
            f"{url}/{first['plan_id']}", json={"decision": "reject", "feedback": feedback}
        )
    )
    second = await _proposed_plan(live, session["id"], 2)
    _expect("steps", [step["id"] for step in second["steps"]], ["a", "b", "c"])
    await _ok(live.http.post(f"{url}/{second['plan_id']}", json={"decision": "approve"}))
    turn = await _ended_turn(live, accepted["url"])
    if "Step c (billing): echo: sum up" not in _content(turn):
        raise ScenarioFailed(f"answer: got {_content(turn)!r}")
    plans = (await _ok(live.http.get(url)))["plans"]
    _expect("plans", [p["status"] for p in plans], ["rejected", "completed"])
    await _close(live, session["id"])
    return {"": Run(session["workflow_id"]), "step": Run(plans[1]["steps"][2]["child_workflow_id"])}
