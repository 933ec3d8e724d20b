"""A coordinator delegates to specialists as child workflows, within a depth limit."""

from __future__ import annotations

from temporalio.client import Client

from keel.formation import Formation, formation_from_data
from keel.messages import tokens_of
from keel.settings import Settings
from keel.store import TranscriptStore, UsageQuery
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session

PRICING = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}


def _team(**sessions: int) -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted", "pricing": PRICING}},
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


async def test_the_specialists_tokens_and_cost_roll_up_into_the_delegating_turn(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _team()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, agent="triage")
        result = await chat(handle, ASK_BILLING)

    own = tokens_of(await store.messages(handle.id))
    child = tokens_of(await store.messages(f"{handle.id}/{result.turn_id}/1/call_1"))
    own_calls = [m for m in await store.messages(handle.id) if m.role == "assistant"]
    assert child.prompt_tokens > 0 and child.cost_usd > 0
    spent = sum(m.usage.prompt_tokens for m in own_calls if m.usage)
    assert result.usage.prompt_tokens == spent + child.prompt_tokens
    assert result.usage.cost_usd > child.cost_usd
    assert result.usage == own  # the delegation's tool message carries the child's usage
    assert result.usage == await store.usage(handle.id)
    # The ledger counts the specialist's call for the session and turn that delegated.
    totals = await store.usage_totals(UsageQuery(tenant="test", group_by="session"))
    [mine] = [t for t in totals if t.key == handle.id]
    assert mine.turns == 1
    assert (mine.prompt_tokens, mine.completion_tokens) == (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
    )
    by_agent = await store.usage_totals(UsageQuery(tenant="test", group_by="agent"))
    assert {"triage", "billing"} <= {t.key for t in by_agent}
