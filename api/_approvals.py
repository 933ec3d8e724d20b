"""Decided approvals read back from the transcript: each is kept on its call's tool message."""

from __future__ import annotations

from keel.approvals import Approval
from keel.messages import Message
from keel.store import TranscriptStore

_PAGE = 1000


async def decided_approvals(store: TranscriptStore, session: str) -> list[Approval]:
    """Every decision of the session that reached its transcript, newest first.

    From the store alone, so it answers without a worker and after the session ended;
    the call's arguments come from the assistant message that asked for it.
    """
    messages: list[Message] = []
    after = -1
    while True:
        page = await store.messages(session, after_seq=after, limit=_PAGE)
        messages += page
        if len(page) < _PAGE:
            break
        after = page[-1].seq
    calls = {
        (m.turn_id, call.id): call.arguments
        for m in messages
        if m.role == "assistant"
        for call in m.tool_calls
    }
    decided = [
        Approval.from_record(
            m.approval,
            turn_id=m.turn_id,
            call_id=m.tool_call_id or "",
            tool=m.name or "",
            arguments=calls.get((m.turn_id, m.tool_call_id or ""), {}),
        )
        for m in messages
        if m.role == "tool" and m.approval is not None
    ]
    return decided[::-1]
