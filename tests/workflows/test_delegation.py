"""A coordinator delegates to specialists as child workflows, within a depth limit."""

from __future__ import annotations

from temporalio.client import Client

from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session


def _team(**sessions: int) -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [
                {
                    "name": "triage",
                    "role": "coordinator",
                    "routes": ["billing"],
                    "description": "Routes requests",
                },
                {"name": "billing", "description": "Answers billing questions"},
            ],
            "sessions": sessions,
        },
        env={},
    )


ASK_BILLING = '[[call billing {"message": "Refund invoice 7? [[say Refund approved]]"}]]'


async def test_a_billing_question_goes_to_the_billing_specialist(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _team()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="triage")
        result = await chat(handle, ASK_BILLING)
    assert result.message is not None
    assert result.message.content == "tool results: billing -> Refund approved"

    # `<session>/<turn>/<step>/<call>`: vendors repeat call ids across steps.
    child_id = f"{handle.id}/{result.turn_id}/1/call_1"
    child = await client.get_workflow_handle(child_id).describe()
    assert child.parent_id == handle.id
    assert [m.content for m in await store.messages(child_id)] == [
        "Refund invoice 7? [[say Refund approved]]",
        "Refund approved",
    ]


async def test_delegation_past_the_depth_limit_is_refused_with_a_clear_error(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _team(max_delegation_depth=0)
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="triage")
        result = await chat(handle, ASK_BILLING)
    assert result.message is not None
    assert "the delegation depth limit (0) is reached" in result.message.content
