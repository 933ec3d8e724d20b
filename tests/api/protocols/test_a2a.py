"""A2A with `a2a-sdk`'s client: the card, send, stream, get, cancel (the turn too),
approvals, keys."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text, get_message_text
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError

from tests.api.live import LiveApi
from tests.api.protocols.conftest import CLIENT, approve, auth, pending_approval

GATED = '[[call lookup {"invoice": 7}]]'


@contextlib.asynccontextmanager
async def a2a_client(
    live: LiveApi, headers: dict[str, str], *, streaming: bool = False
) -> AsyncIterator[Client]:
    """An A2A client made from the served card, sending `headers`."""
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, str(live.http.base_url)).get_agent_card()
        config = ClientConfig(streaming=streaming, httpx_client=http)
        async with ClientFactory(config).create(card) as client:
            yield client


def message(text: str, *, context_id: str | None = None, skill: str | None = None) -> Message:
    return Message(
        role=Role.ROLE_USER,
        message_id=uuid.uuid4().hex,
        parts=[Part(text=text)],
        context_id=context_id,
        metadata={"skill": skill} if skill else None,
    )


async def send(client: Client, sent: Message, *, immediately: bool = False) -> Task:
    """Send a message, blocking until the task ends or waits for input; the task."""
    request = SendMessageRequest(
        message=sent, configuration=SendMessageConfiguration(return_immediately=immediately)
    )
    answers = [answer async for answer in client.send_message(request)]
    assert len(answers) == 1 and answers[0].HasField("task"), answers
    return answers[0].task


def answer(task: Task) -> str:
    return " ".join(get_artifact_text(artifact) for artifact in task.artifacts)


async def get(client: Client, task_id: str) -> Task:
    return await client.get_task(GetTaskRequest(id=task_id))


async def until(client: Client, task_id: str, state: TaskState.ValueType) -> Task:
    for _ in range(200):
        task = await get(client, task_id)
        if task.status.state == state:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} is {TaskState.Name(task.status.state)}")


async def test_the_card_lists_each_agent_as_a_skill_with_streaming_and_bearer_keys(
    live: LiveApi,
) -> None:
    card: AgentCard = await A2ACardResolver(live.http, str(live.http.base_url)).get_agent_card()
    assert [(s.id, s.description) for s in card.skills] == [
        ("assistant", "Answers anything"),
        ("billing", "Answers billing questions"),
    ]
    assert card.capabilities.streaming
    (interface,) = card.supported_interfaces
    assert interface.url == str(live.http.base_url.join("/a2a"))
    assert interface.protocol_binding == "JSONRPC"
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "bearer"


async def test_a_message_is_a_turn_and_its_context_is_the_session(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        first = await send(client, message("hello"))
        assert first.status.state == TaskState.TASK_STATE_COMPLETED
        assert answer(first) == "echo: hello"
        second = await send(client, message("again", context_id=first.context_id))
        assert second.context_id == first.context_id and second.id != first.id
        assert answer(second) == "echo: again"
        got = await get(client, first.id)
    assert got.status.state == TaskState.TASK_STATE_COMPLETED and answer(got) == "echo: hello"
    session = (await live.http.get(f"/v1/sessions/{first.context_id}", headers=auth())).json()
    assert session["agent"] == "assistant"  # the default agent
    assert [m["turn_id"] for m in session["messages"]] == [first.id] * 2 + [second.id] * 2


async def test_the_skill_in_metadata_picks_the_agent(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        task = await send(client, message("hi", skill="billing"))
    session = (await live.http.get(f"/v1/sessions/{task.context_id}", headers=auth())).json()
    assert session["agent"] == "billing"


async def test_a_streamed_message_sends_updates_then_completes(live: LiveApi) -> None:
    async with a2a_client(live, auth(), streaming=True) as client:
        request = SendMessageRequest(message=message("one two three four"))
        updates: list[StreamResponse] = [u async for u in client.send_message(request)]
    kinds = [u.WhichOneof("payload") for u in updates]
    assert kinds[0] == "task"
    assert kinds.count("artifact_update") >= 2, kinds  # deltas, then the whole answer
    last = updates[-1]
    assert last.HasField("status_update")
    assert last.status_update.status.state == TaskState.TASK_STATE_COMPLETED
    final = [u.artifact_update for u in updates if u.HasField("artifact_update")][-1]
    assert final.last_chunk and get_artifact_text(final.artifact) == "echo: one two three four"


async def test_a_gated_tool_makes_the_task_input_required_until_approved(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        task = await send(client, message(GATED))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        approval = await pending_approval(live.http, task.context_id)
        said = get_message_text(task.status.message)
        assert f"/v1/sessions/{task.context_id}/approvals/{approval['id']}" in said
        await approve(live.http, task.context_id, approval["id"])
        done = await until(client, task.id, TaskState.TASK_STATE_COMPLETED)
    assert answer(done) == "tool results: lookup -> invoice 7: 40 EUR"


async def test_cancelling_a_task_cancels_its_turn_at_the_approval(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        task = await send(client, message(GATED))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert (await get(client, task.id)).status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):  # a2a-sdk's own check: it has ended
            await client.cancel_task(CancelTaskRequest(id=task.id))
    turn = await _turn(live, task.context_id, task.id)
    assert turn["status"] == "cancelled"  # the turn itself, not only the task
    listed = await live.http.get(f"/v1/sessions/{task.context_id}/approvals", headers=auth())
    assert listed.json()["approvals"] == []


async def test_cancelling_a_working_task_stops_its_model_call(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        task = await send(client, message("ponder [[sleep 30]]"), immediately=True)
        await until(client, task.id, TaskState.TASK_STATE_WORKING)
        asked = time.monotonic()
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        turn = await _turn(live, task.context_id, task.id)
        assert turn["status"] == "cancelled" and time.monotonic() - asked < 10
        # The session goes on: the next task in its context completes.
        after = await send(client, message("after", context_id=task.context_id))
    assert after.status.state == TaskState.TASK_STATE_COMPLETED and answer(after) == "echo: after"


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        (message("   "), "the message is empty"),
        (message("hi", skill="nobody"), "no agent named 'nobody'"),
        (message("hi", context_id="no-such-session"), "no such session"),
        (message("hi", context_id="../x"), "contextId must match"),
        (message("hi", context_id="x\n"), "contextId must match"),
    ],
)
async def test_a_bad_message_is_a_json_rpc_error(live: LiveApi, sent: Message, says: str) -> None:
    async with a2a_client(live, auth()) as client:
        with pytest.raises(InvalidParamsError, match=says.replace(".", r"\.")):
            await send(client, sent)


async def test_a_message_to_an_existing_task_is_refused(live: LiveApi) -> None:
    async with a2a_client(live, auth()) as client:
        task = await send(client, message("hi"))
        follow_up = message("more", context_id=task.context_id)
        follow_up.task_id = task.id
        with pytest.raises(InvalidParamsError, match="each message starts a new task"):
            await send(client, follow_up)


async def test_without_a_key_a2a_answers_401(live: LiveApi) -> None:
    async with a2a_client(live, {}) as client:  # the card is public
        with pytest.raises(A2AClientError, match="HTTP Error 401"):
            await send(client, message("hi"))


async def test_a_client_key_reaches_only_its_users_tasks_and_sessions(live: LiveApi) -> None:
    async with a2a_client(live, auth(CLIENT, "ann")) as ann:
        task = await send(ann, message("hi"))
    async with a2a_client(live, auth(CLIENT, "bob")) as bob:
        with pytest.raises(TaskNotFoundError):
            await get(bob, task.id)
        with pytest.raises(InvalidParamsError, match="no session"):
            await send(bob, message("hi", context_id=task.context_id))


async def _turn(live: LiveApi, session_id: str, turn_id: str) -> dict[str, Any]:
    url = f"/v1/sessions/{session_id}/turns/{turn_id}"
    for _ in range(200):
        turn: dict[str, Any] = (await live.http.get(url, headers=auth())).json()
        if turn["status"] in ("completed", "failed", "cancelled"):
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not end")
