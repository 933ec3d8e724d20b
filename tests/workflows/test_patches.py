"""Patches cost a new run one marker, the baseline's, however many of them it reaches."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from keel.approvals import ApprovalDecisionInput
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.formations import gated_lookup
from tests.workflows.helpers import chat, pending_approval, send, start_session, wait_for_turn
from workflows._patches import BASELINE_PATCH


async def test_a_new_session_records_one_patch_marker_for_every_patch_it_reaches(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = gated_lookup()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        await chat(handle, "hello")  # the memo's patches
        turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')  # approvals', tools'
        approval = await pending_approval(handle)
        await handle.respond_to_approval(
            ApprovalDecisionInput(approval_id=approval.id, decision="approve")
        )
        assert (await wait_for_turn(handle, turn_id)).status == "completed"
        await chat(handle, "and again")
        events = (await handle.workflow.fetch_history()).events

    markers = [
        str(e.marker_recorded_event_attributes)
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    change_versions = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "TemporalChangeVersion"
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert len(markers) == 1 and BASELINE_PATCH in markers[0]
    assert len(change_versions) == 1
