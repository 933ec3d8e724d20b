"""Approval gates: decisions by update and by signal, timeouts, restarts, several per step."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from keel.approvals import Approval, ApprovalDecisionInput
from keel.devserver import temporal_binary
from keel.formation import Formation, formation_from_data
from keel.session import SendMessageInput, TurnResult
from keel.session_handle import SessionHandle, SessionRejected
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.temporal import PENDING_APPROVALS_ATTR
from tests.conftest import running_workers
from tests.workflows.helpers import start_session, wait_for_turn

ASK = '[[call lookup {"invoice": 7}]]'


def _gated(**approvals: Any) -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup", "search"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}, **approvals},
        },
        env={},
    )


async def _send(handle: SessionHandle, text: str) -> str:
    sent = await handle.send_message(SendMessageInput(text=text))
    return sent.turn_id


async def _pending(handle: SessionHandle, count: int = 1) -> list[Approval]:
    for _ in range(200):
        state = await handle.state()
        if len(state.pending_approvals) >= count:
            assert state.turns[-1].status == "awaiting_approval"
            return state.pending_approvals
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _decide(handle: SessionHandle, **decision: Any) -> Approval:
    return await handle.respond_to_approval(ApprovalDecisionInput(**decision))


def _answer(result: TurnResult) -> str:
    assert result.status == "completed" and result.message is not None, result
    return result.message.content


async def test_approve_runs_the_tool_and_the_approval_is_in_state(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        assert (approval.tool, approval.arguments, approval.status) == (
            "lookup",
            {"invoice": 7},
            "pending",
        )
        assert approval.expires_at > approval.requested_at
        decided = await _decide(handle, approval_id=approval.id, decision="approve")
        assert (decided.status, decided.decided_by) == ("approved", "update")
        answer = _answer(await wait_for_turn(handle, turn_id))
    assert answer == "tool results: lookup -> invoice 7: 40 EUR"


async def test_reject_tells_the_model_why_and_does_not_run_the_tool(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        await _decide(handle, approval_id=approval.id, decision="reject", feedback="not today")
        answer = _answer(await wait_for_turn(handle, turn_id))
    assert answer == "tool results: lookup -> The user rejected this call. Reviewer: not today"


async def test_revise_runs_with_new_arguments_or_sends_feedback_only(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        await _decide(handle, approval_id=approval.id, decision="revise", arguments={"invoice": 8})
        revised = _answer(await wait_for_turn(handle, turn_id))

        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        await _decide(handle, approval_id=approval.id, decision="revise", feedback="use 9")
        feedback_only = _answer(await wait_for_turn(handle, turn_id))
    assert "revised by the user: {'invoice': 8}" in revised
    assert revised.endswith("invoice 8: 40 EUR")
    assert feedback_only.endswith("The user asked for changes before this runs. Reviewer: use 9")


async def test_no_decision_in_time_applies_on_timeout(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated(timeout_s=1, on_timeout="reject")
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        answer = _answer(await wait_for_turn(handle, await _send(handle, ASK)))
    assert "The user rejected this call. Reviewer: no decision within 1 s" in answer


async def test_several_approvals_in_one_step_are_answered_independently(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(
            handle, '[[call lookup {"invoice": 1}]] [[call lookup {"invoice": 2}]]'
        )
        first, second = await _pending(handle, 2)
        await _decide(handle, approval_id=second.id, decision="reject", feedback="no")
        await _decide(handle, approval_id=first.id, decision="approve")
        answer = _answer(await wait_for_turn(handle, turn_id))
    assert answer.startswith("tool results: lookup -> invoice 1: 40 EUR")
    assert answer.endswith("lookup -> The user rejected this call. Reviewer: no")


async def test_unknown_and_already_decided_approvals_are_refused(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        for decision, error_type in (
            ({"approval_id": "nope", "decision": "approve"}, "UnknownApproval"),
            ({"approval_id": approval.id, "decision": "approve"}, None),
            ({"approval_id": approval.id, "decision": "reject"}, "ApprovalDecided"),
        ):
            if error_type is None:
                await _decide(handle, **decision)
                continue
            with pytest.raises(SessionRejected) as caught:
                await _decide(handle, **decision)
            assert caught.value.type == error_type
        assert (await wait_for_turn(handle, turn_id)).status == "completed"


async def test_the_temporal_cli_can_answer_with_a_signal(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        signal = await asyncio.to_thread(
            subprocess.run,
            [
                str(temporal_binary()),
                "workflow",
                "signal",
                "--address",
                settings.temporal_address,
                "--workflow-id",
                handle.id,
                "--name",
                "approval",
                "--input",
                f'{{"approval_id": "{approval.id}", "decision": "approve"}}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert signal.returncode == 0, signal.stderr
        answer = _answer(await wait_for_turn(handle, turn_id))
    assert answer == "tool results: lookup -> invoice 7: 40 EUR"


async def test_a_session_waiting_for_approval_survives_a_worker_restart(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
    # No worker now: the decision waits in Temporal until one comes back.
    await handle.signal_approval(ApprovalDecisionInput(approval_id=approval.id, decision="approve"))
    async with running_workers(client, settings, formation, store):
        answer = _answer(await wait_for_turn(handle, turn_id))
    assert answer == "tool results: lookup -> invoice 7: 40 EUR"


async def _pending_attr_upserts(handle: SessionHandle) -> list[bytes]:
    """The values of `KeelPendingApprovals` the session upserted, in order."""
    history = await handle.workflow.fetch_history()
    upserts = []
    for event in history.events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if PENDING_APPROVALS_ATTR.name in fields.indexed_fields:
                upserts.append(fields.indexed_fields[PENDING_APPROVALS_ATTR.name].data)
    return upserts


@pytest.mark.parametrize(
    ("started_with", "upserted"),
    [
        # Started as an older API started sessions: were the attribute unknown to the
        # namespace, an upsert would fail the workflow task on every retry.
        (None, []),
        (TypedSearchAttributes([SearchAttributePair(PENDING_APPROVALS_ATTR, 0)]), [b"1", b"0"]),
    ],
    ids=["started-without-it-never-upserts-it", "started-with-it-keeps-it-current"],
)
async def test_the_pending_approvals_attribute_is_upserted_only_if_the_session_started_with_it(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    started_with: TypedSearchAttributes | None,
    upserted: list[bytes],
) -> None:
    formation = _gated()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, search_attributes=started_with)
        turn_id = await _send(handle, ASK)
        [approval] = await _pending(handle)
        await _decide(handle, approval_id=approval.id, decision="approve")
        _answer(await wait_for_turn(handle, turn_id))
        assert await _pending_attr_upserts(handle) == upserted
