"""Tool arguments and results in step events, shown or redacted as the formation says."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from keel.events import EVENTS_TOPIC, SessionEvent
from keel.formation import Formation, PrivacyConfig
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session

CARD = "4111-1111-1111-1111"


@pytest.mark.parametrize("redact", [False, True])
async def test_tool_events_follow_the_privacy_setting(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore, redact: bool
) -> None:
    scripted = formation.model_copy(
        update={
            "models": {
                "default": formation.models["default"].model_copy(update={"provider": "scripted"})
            },
            "agents": [formation.agents[0].model_copy(update={"tools": ["lookup"]})],
            "python_tools": ["tests.fakes.tools"],
            "privacy": PrivacyConfig(redact_tool_arguments=redact, redact_tool_results=redact),
        }
    )
    async with running_workers(client, settings, scripted, store):
        handle = await start_session(client, settings, scripted)
        turn = await chat(handle, f'pay [[call lookup {{"card": "{CARD}"}}]]')
        assert turn.status == "completed"
        events: dict[str, SessionEvent] = {}
        stream = WorkflowStreamClient.create(client, handle.id)
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            events[item.data.type] = item.data
            if item.data.type == "turn.completed":
                break

    call, result = events["tool.call"].data, events["tool.result"].data
    assert call["tool"] == result["tool"] == "lookup" and result["is_error"] is True
    if redact:
        assert call["arguments"] == result["glimpse"] == "[redacted]"
        assert CARD not in str(events)
    else:
        assert call["arguments"] == {"card": CARD}
        assert result["glimpse"].startswith("invalid arguments for 'lookup'")
    # The transcript (what the model sees) is never redacted.
    assert any(m.role == "tool" for m in await store.messages(handle.id))
