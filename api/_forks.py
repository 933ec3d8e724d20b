"""Forking a session: where its transcript may be cut, and the new session that starts there.

A fork is a new session whose transcript store holds a prefix of another
session's messages. Its workflow starts as a continued run would, with the
seq after the prefix (`CarriedState.next_seq`), so its first model call
finds the prefix in the store and the model sees exactly it. No workflow
code knows of forks.

A prefix is made of whole turns: it ends before a turn's first message or at
the end of the transcript, never inside a turn, and never inside a turn that
has not ended (running, or waiting for an approval). It never ends with a
tool call whose result it lacks: vendors refuse such a transcript.
"""

from __future__ import annotations

from temporalio.client import Client

from api import _sessions
from api._sessions import DescribedSession
from api.deps import AppState, Caller
from api.problems import Problem
from api.schemas import ForkedFrom, SessionOut
from keel.logging import get_logger
from keel.messages import Message, final_answer
from keel.session import CarriedState, session_workflow_id
from keel.store import MAX_SEQ, TranscriptStore

log = get_logger(__name__)


async def fork_session(
    state: AppState,
    client: Client,
    caller: Caller,
    source: DescribedSession,
    *,
    upto_seq: int | None,
    session_id: str,
    retried: bool,
) -> SessionOut:
    """Copy `source`'s prefix into a new session of the same owner and agent, and start it.

    Args:
        upto_seq: where the prefix ends (its messages have smaller seqs); None:
            after the last turn that has ended.
        session_id: the new session's id.
        retried: an earlier attempt of this request may have started the fork:
            then that fork is the answer.
    """
    if retried and (existing := await _started(state, client, caller, session_id)):
        return existing
    original = source.session
    try:
        agent = state.formation.agent(original.agent)
    except KeyError:
        raise Problem(
            409,
            f"the session's agent {original.agent!r} is no longer in the formation",
            type_="agent-not-found",
        ) from None
    seq = await fork_point(state.store, source, upto_seq)
    if caller.limited and not retried:
        # Before the copy, so a refused fork leaves no rows behind.
        await _sessions.check_session_quota(state, client, caller.tenant, original.user_id)
    copied = await state.store.copy_prefix(
        original.workflow_id,
        session_workflow_id(caller.tenant, session_id),
        upto_seq=seq,
        tenant=caller.tenant,
        user_id=original.user_id,
        formation=state.formation.id,
    )
    log.info(
        "forking session", source=original.id, fork=session_id, seq=seq, messages=copied.messages
    )
    return await _sessions.start_session(
        state,
        client,
        caller,
        agent=agent,
        user_id=original.user_id,
        metadata=original.metadata,
        session_id=session_id,
        retried=True,  # the limit was checked above
        carried=CarriedState(next_seq=seq, summary_upto=copied.summary_upto),
        forked_from=ForkedFrom(session_id=original.id, seq=seq),
    )


async def fork_point(store: TranscriptStore, source: DescribedSession, upto_seq: int | None) -> int:
    """The seq a fork of `source` cuts at: `upto_seq` checked, or the default.

    Raises:
        Problem: 409 `fork-point-invalid` for a seq past the end, inside a turn, or
            after a tool call without its result; 409 `turn-unfinished` for a seq
            inside (or at the end of) a turn that has not ended. A conflict with the
            transcript as it is now, not a malformed request (a 422): the same seq
            may fit the session later, or another session.
    """
    key = source.session.workflow_id
    last = await store.window(key, before_seq=MAX_SEQ, limit=1)
    end = last[0].seq + 1 if last else 0
    if upto_seq is not None and upto_seq > end:
        raise _invalid(f"upto_seq {upto_seq} is past the end of the transcript, which is {end}")
    if not last:
        return 0
    tail = await store.turn_messages(key, last[0].turn_id)
    unfinished = last[0].turn_id if await _unfinished(source, tail) else None
    if upto_seq is None:
        return await _last_whole_turn(store, key, tail[0].seq if unfinished else end)
    return await _checked(store, key, upto_seq, unfinished)


async def _checked(store: TranscriptStore, key: str, upto_seq: int, unfinished: str | None) -> int:
    """`upto_seq` if it ends a valid prefix, else the problem why not."""
    before = await store.window(key, before_seq=upto_seq, limit=1) if upto_seq else []
    if not before:
        return 0
    turn_id = before[0].turn_id
    if turn_id == unfinished:
        raise Problem(
            409,
            f"upto_seq {upto_seq} is inside turn {turn_id}, which has not ended: fork before"
            " it, or once it ends",
            type_="turn-unfinished",
            turn_id=turn_id,
        )
    turn = await store.turn_messages(key, turn_id)
    after = await store.messages(key, after_seq=upto_seq - 1, limit=1)
    if after and after[0].turn_id == turn_id:
        raise _invalid(
            f"upto_seq {upto_seq} is inside turn {turn_id} (seqs {turn[0].seq} to"
            f" {turn[-1].seq}): fork at {turn[0].seq} or {turn[-1].seq + 1}",
            turn_id=turn_id,
        )
    if dangling := dangling_calls(turn):
        raise _invalid(
            f"the prefix would end with tool calls that have no result ({', '.join(dangling)}):"
            f" fork at {turn[0].seq}, before turn {turn_id}",
            turn_id=turn_id,
        )
    return before[0].seq + 1


async def _last_whole_turn(store: TranscriptStore, key: str, cut: int) -> int:
    """The latest turn boundary at or before `cut` whose prefix a model accepts."""
    while cut > 0:
        before = await store.window(key, before_seq=cut, limit=1)
        if not before:
            return 0
        turn = await store.turn_messages(key, before[0].turn_id)
        if not dangling_calls(turn):
            return before[0].seq + 1
        cut = turn[0].seq
    return 0


def dangling_calls(messages: list[Message]) -> list[str]:
    """Ids of the last assistant message's tool calls that no later tool result answers."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "assistant":
            answered = {m.tool_call_id for m in messages[index + 1 :] if m.role == "tool"}
            return [call.id for call in message.tool_calls if call.id not in answered]
    return []


async def _unfinished(source: DescribedSession, tail: list[Message]) -> bool:
    """Whether the turn of the transcript's last messages has not ended.

    Turns run one at a time, so only the last turn in the store can be running.
    One with its final answer stored has ended; else the session says (or, with
    no worker to answer, its memo, which records every turn that ends without
    an answer). A turn neither knows of is taken as unfinished.
    """
    if final_answer(tail) is not None or source.session.status != "active":
        return False
    turn_id = tail[0].turn_id
    live = await _sessions.live_state(source)
    if live is not None:
        return live.current_turn == turn_id
    summary = source.summary
    return summary is None or summary.turn(turn_id) is None


async def _started(
    state: AppState, client: Client, caller: Caller, session_id: str
) -> SessionOut | None:
    """The session `session_id`, if it was started."""
    try:
        described = await _sessions.describe_session(state, client, caller, session_id)
    except Problem as problem:
        if problem.status == 404:
            return None
        raise
    return described.session


def _invalid(detail: str, *, turn_id: str | None = None) -> Problem:
    if turn_id is None:
        return Problem(409, detail, type_="fork-point-invalid")
    return Problem(409, detail, type_="fork-point-invalid", turn_id=turn_id)
