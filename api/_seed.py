"""Starting a session with a conversation already in it: earlier messages and extra instructions.

The workflow needs no change for it. A session's transcript lives in the store,
and its model calls read their window from there: the API writes the messages
before the workflow starts, and starts it at the seq after them, as a run that
continues a session starts (`CarriedState.next_seq`). The first model call then
finds them in the store as its prefix, summaries cover them once they leave the
window, and `GET /v1/sessions/{id}` lists them. The API also registers the
session for forgetting, which the first model call does only for a session that
starts at seq 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keel.messages import Message
from keel.session import CarriedState, StartSessionInput
from keel.store import TranscriptStore


@dataclass(frozen=True)
class SessionSeed:
    """What a new session starts with besides its agent."""

    messages: list[Message] = field(default_factory=list)
    """Its first messages, seq 0, 1, … in order."""
    instructions: str | None = None
    """Added to the agent's system prompt, for this session only."""


def seeded_input(start: StartSessionInput, seed: SessionSeed) -> StartSessionInput:
    """The session's input with the seed's instructions, starting after its messages."""
    agent = start.agent
    if seed.instructions:
        prompt = "\n\n".join(p for p in (agent.system_prompt, seed.instructions) if p)
        agent = agent.model_copy(update={"system_prompt": prompt})
    carried = CarriedState(next_seq=len(seed.messages)) if seed.messages else None
    return start.model_copy(update={"agent": agent, "carried": carried})


async def store_seed(
    store: TranscriptStore, start: StartSessionInput, workflow_id: str, seed: SessionSeed
) -> None:
    """Register the session and write the seed's messages, before its workflow runs.

    Idempotent (rows by seq), so a retried request writes the same rows again.
    """
    if not seed.messages:
        return
    await store.register_session(
        workflow_id, tenant=start.tenant, user_id=start.user_id, formation=start.memory.formation
    )
    await store.upsert(workflow_id, seed.messages)
