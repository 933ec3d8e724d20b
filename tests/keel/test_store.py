"""Transcript stores: the same contract on SQLite and PostgreSQL, and migrations of old stores."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from keel.idempotency import IdempotencyRecord, StoredResponse
from keel.messages import Message, Summary, Usage
from keel.store import (
    CallUsage,
    CopiedPrefix,
    PostgresTranscriptStore,
    SqliteTranscriptStore,
    TranscriptStore,
    UsageQuery,
    _postgres,
    _sqlite,
    open_store,
)
from tests._postgres import postgres_schema

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _message(seq: int, turn: str = "t1", content: str | None = None) -> Message:
    role = "user" if seq % 2 == 0 else "assistant"
    return Message(seq=seq, role=role, content=content or f"m{seq}", turn_id=turn, created_at=NOW)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TranscriptStore]:
    if request.param == "sqlite":
        store: TranscriptStore = open_store("sqlite:///keel.db", data_dir=tmp_path)
        yield store
        await store.close()
        return
    async with postgres_schema() as url:
        store = open_store(url, data_dir=tmp_path)
        assert isinstance(store, PostgresTranscriptStore)
        yield store
        await store.close()


async def test_upserts_are_idempotent_and_windows_read_back(any_store: TranscriptStore) -> None:
    await any_store.upsert("s", [_message(i) for i in range(6)])
    await any_store.upsert("s", [_message(5, content="retried")])
    await any_store.upsert("other", [_message(0)])

    window = await any_store.window("s", before_seq=5, limit=3)
    assert [m.seq for m in window] == [2, 3, 4]
    everything = await any_store.messages("s")
    assert [m.seq for m in everything] == list(range(6)) and everything[-1].content == "retried"
    assert [m.seq for m in await any_store.messages("s", after_seq=3, limit=1)] == [4]
    assert len(await any_store.turn_messages("s", "t1")) == 6
    assert everything[0].created_at == NOW


async def test_usage_sums_the_answers_tokens_from_a_seq_on(any_store: TranscriptStore) -> None:
    def answer(seq: int, prompt: int) -> Message:
        tokens = Usage(prompt_tokens=prompt, completion_tokens=1)
        return _message(seq).model_copy(update={"usage": tokens})

    # seq 3 is an answer of an older build, without usage.
    await any_store.upsert("s", [_message(0), answer(1, 10), _message(2), _message(3)])
    await any_store.upsert("s", [_message(4), answer(5, 20), _message(6), answer(7, 40)])
    await any_store.upsert("other", [answer(1, 1000)])

    assert await any_store.usage("s") == Usage(prompt_tokens=70, completion_tokens=3)
    assert await any_store.usage("s", from_seq=4) == Usage(prompt_tokens=60, completion_tokens=2)
    assert await any_store.usage("s", from_seq=8) == Usage()
    assert await any_store.usage("nobody") == Usage()


async def test_usage_counts_cost_estimates_and_delegations_results(
    any_store: TranscriptStore,
) -> None:
    priced = Usage(prompt_tokens=10, completion_tokens=2, cost_usd=0.25)
    guessed = Usage(prompt_tokens=5, completion_tokens=1, cost_usd=0.5, estimated=True)
    delegated = Message(
        seq=2, role="tool", content="done", turn_id="t1", created_at=NOW, usage=guessed
    )
    await any_store.upsert("s", [_message(1).model_copy(update={"usage": priced}), delegated])

    assert await any_store.usage("s") == Usage(
        prompt_tokens=15, completion_tokens=3, cost_usd=0.75, estimated=True
    )
    assert (await any_store.usage("s", from_seq=1)).estimated
    assert not (await any_store.usage("s", from_seq=3)).estimated


def _call(n: int, *, session: str = "keel/t/s1", user: str = "ada", **fields: object) -> CallUsage:
    values: dict[str, object] = {
        "call": f"{session}/t{n}/1",
        "session": session,
        "turn_id": f"t{n}",
        "tenant": "t",
        "user_id": user,
        "agent": "triage",
        "model": "gpt-x",
        "usage": Usage(prompt_tokens=100, completion_tokens=10, cost_usd=0.001),
        "created_at": NOW + timedelta(hours=n),
        **fields,
    }
    return CallUsage(**values)  # type: ignore[arg-type]


async def test_the_usage_ledger_sums_calls_per_group_and_time(any_store: TranscriptStore) -> None:
    await any_store.record_usage(_call(0))
    await any_store.record_usage(_call(0))  # a retry rewrites its row
    await any_store.record_usage(_call(1, agent="billing", model="gpt-y"))
    guess = Usage(prompt_tokens=7, completion_tokens=3, estimated=True)
    await any_store.record_usage(_call(2, session="keel/t/s2", user="bob", usage=guess))
    await any_store.record_usage(_call(3, session="keel/other/s1", tenant="other"))

    by_session = await any_store.usage_totals(UsageQuery(tenant="t", group_by="session"))
    assert [(t.key, t.turns, t.prompt_tokens, t.estimated) for t in by_session] == [
        ("keel/t/s1", 2, 200, False),
        ("keel/t/s2", 1, 7, True),
    ]
    assert by_session[0].cost_usd == pytest.approx(0.002)
    by_agent = await any_store.usage_totals(UsageQuery(tenant="t", group_by="agent"))
    assert {t.key: t.completion_tokens for t in by_agent} == {"triage": 13, "billing": 10}
    by_model = await any_store.usage_totals(UsageQuery(tenant="t", group_by="model", user_id="ada"))
    assert [t.key for t in by_model] == ["gpt-x", "gpt-y"]
    window = UsageQuery(
        tenant="t", group_by="user", since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=2)
    )
    assert [(t.key, t.turns) for t in await any_store.usage_totals(window)] == [("ada", 1)]

    assert await any_store.delete_sessions(["keel/t/s1"]) == 2
    remaining = await any_store.usage_totals(UsageQuery(tenant="t", group_by="user"))
    assert [t.key for t in remaining] == ["bob"]


async def test_last_activity_is_the_latest_message_of_each_session(
    any_store: TranscriptStore,
) -> None:
    later = NOW + timedelta(minutes=5)
    await any_store.upsert("s", [_message(0), _message(1)])
    await any_store.upsert("s", [_message(2).model_copy(update={"created_at": later})])
    await any_store.upsert("other", [_message(0)])

    assert await any_store.last_activity(["s", "other", "empty"]) == {"s": later, "other": NOW}
    assert await any_store.last_activity([]) == {}


async def test_summaries_keep_the_one_covering_most(any_store: TranscriptStore) -> None:
    assert await any_store.latest_summary("s") is None
    await any_store.save_summary("s", Summary(upto_seq=10, content="early", created_at=NOW))
    await any_store.save_summary("s", Summary(upto_seq=20, content="later", created_at=NOW))
    await any_store.save_summary("s", Summary(upto_seq=20, content="redone", created_at=NOW))
    latest = await any_store.latest_summary("s")
    assert latest is not None and (latest.upto_seq, latest.content) == (20, "redone")


async def test_truncating_drops_a_tail_of_messages_and_summaries_once(
    any_store: TranscriptStore,
) -> None:
    await any_store.upsert("s", [_message(i) for i in range(6)])
    await any_store.upsert("other", [_message(i) for i in range(6)])
    for upto in (2, 4, 5):
        await any_store.save_summary("s", Summary(upto_seq=upto, content=f"{upto}", created_at=NOW))

    # Seqs 4 and 5 go, and the summaries that read them (upto 5); upto 4 read seqs 0-3 only.
    assert await any_store.truncate("s", from_seq=4) == 3
    assert await any_store.truncate("s", from_seq=4) == 0
    assert [m.seq for m in await any_store.messages("s")] == [0, 1, 2, 3]
    latest = await any_store.latest_summary("s")
    assert latest is not None and latest.upto_seq == 4
    assert len(await any_store.messages("other")) == 6
    # The seqs are free again: the next turn writes them afresh.
    await any_store.upsert("s", [_message(4, "t2")])
    assert [m.turn_id for m in await any_store.window("s", before_seq=5, limit=9)][-1] == "t2"


async def test_references_belong_to_their_session(any_store: TranscriptStore) -> None:
    await any_store.put_reference("s", "ref_1", "x" * 100_000)
    await any_store.put_reference("s", "ref_1", "y" * 10)
    assert await any_store.get_reference("s", "ref_1") == "y" * 10
    assert await any_store.get_reference("elsewhere", "ref_1") is None


async def test_deleting_a_users_sessions_leaves_nothing(any_store: TranscriptStore) -> None:
    for session, user in (("a1", "ann"), ("a2", "ann"), ("b1", "bob")):
        await any_store.register_session(session, tenant="t", user_id=user, formation="f")
        await any_store.upsert(session, [_message(0), _message(1)])
        await any_store.put_reference(session, "r", "content")
        await any_store.save_summary(session, Summary(upto_seq=1, content="s", created_at=NOW))
    await any_store.register_session("a1", tenant="t", user_id="someone-else", formation="f")

    sessions = await any_store.user_sessions("t", "ann")
    assert sessions == ["a1", "a2"]
    assert await any_store.user_sessions("other-tenant", "ann") == []
    assert await any_store.delete_sessions(sessions) == 2 * 5
    assert await any_store.user_sessions("t", "ann") == []
    for gone in sessions:
        assert await any_store.messages(gone) == []
        assert await any_store.get_reference(gone, "r") is None
        assert await any_store.latest_summary(gone) is None
    assert len(await any_store.messages("b1")) == 2


async def test_a_prefix_is_copied_with_its_references_and_summary(
    any_store: TranscriptStore,
) -> None:
    answer = _message(1).model_copy(update={"usage": Usage(prompt_tokens=5, completion_tokens=1)})
    result = Message(
        seq=2,
        role="tool",
        content="glimpse",
        turn_id="t1",
        created_at=NOW,
        tool_call_id="call_1",
        name="lookup",
        ref="ref_in",
    )
    later = result.model_copy(update={"seq": 5, "turn_id": "t3", "ref": "ref_out"})
    source = [_message(0), answer, result, _message(3, "t2"), _message(4, "t3"), later]
    await any_store.upsert("src", source)
    await any_store.put_reference("src", "ref_in", "the whole result")
    await any_store.put_reference("src", "ref_out", "a result past the prefix")
    for upto, text in ((2, "early"), (4, "covers the prefix"), (6, "covers more")):
        await any_store.save_summary("src", Summary(upto_seq=upto, content=text, created_at=NOW))

    owner = {"tenant": "t", "user_id": "ann", "formation": "f"}
    copied = await any_store.copy_prefix("src", "fork", upto_seq=4, **owner)
    assert copied == CopiedPrefix(messages=4, summary_upto=4)
    forked = await any_store.messages("fork")
    # The same messages, without the tokens of the calls that wrote them.
    assert forked == [m.model_copy(update={"usage": None}) for m in source[:4]]
    assert await any_store.get_reference("fork", "ref_in") == "the whole result"
    assert await any_store.get_reference("fork", "ref_out") is None
    summary = await any_store.latest_summary("fork")
    assert summary is not None and summary.content == "covers the prefix"
    assert await any_store.user_sessions("t", "ann") == ["fork"]
    assert await any_store.usage("fork") == Usage()

    # Again, once the fork has a message of its own: what the fork holds stays.
    await any_store.upsert("fork", [_message(4, "own", "mine")])
    assert await any_store.copy_prefix("src", "fork", upto_seq=5, **owner) == CopiedPrefix(5, 4)
    assert [m.content for m in await any_store.messages("fork")] == [
        "m0",
        "m1",
        "glimpse",
        "m3",
        "mine",
    ]
    assert await any_store.messages("src") == source
    empty = await any_store.copy_prefix("src", "fresh", upto_seq=0, **owner)
    assert empty == CopiedPrefix(messages=0, summary_upto=0)
    assert await any_store.user_sessions("t", "ann") == ["fork", "fresh"]


def _record(
    key: str = "k1", *, user: str = "ann", route: str = "POST /v1/chat", **fields: object
) -> IdempotencyRecord:
    values: dict[str, object] = {"request_hash": "h1", "ids": {"turn_id": "t1"}, "created_at": NOW}
    values.update(fields)
    return IdempotencyRecord(tenant="t", user_id=user, route=route, key=key, **values)


async def test_an_idempotency_key_is_claimed_once_per_user_and_route(
    any_store: TranscriptStore,
) -> None:
    live = NOW - timedelta(hours=24)
    assert await any_store.claim_idempotency(_record(), live_after=live) is None
    again = await any_store.claim_idempotency(
        _record(request_hash="h2", ids={"turn_id": "t2"}), live_after=live
    )
    assert again == _record()  # the first claim's hash and ids, still started
    assert await any_store.claim_idempotency(_record(user="bob"), live_after=live) is None
    other_route = _record(route="POST /v1/sessions")
    assert await any_store.claim_idempotency(other_route, live_after=live) is None

    answer = StoredResponse(status_code=201, body={"id": "s1"}, headers={"Location": "/x"})
    await any_store.finish_idempotency(_record(), answer)
    await any_store.finish_idempotency(_record(), StoredResponse(status_code=200, body=None))
    done = await any_store.claim_idempotency(_record(), live_after=live)
    assert done is not None and (done.status, done.response) == ("done", answer)
    assert done.ids == {"turn_id": "t1"} and done.created_at == NOW
    bob = await any_store.claim_idempotency(_record(user="bob"), live_after=live)
    assert bob is not None and bob.status == "started"


async def test_claims_of_one_key_at_once_have_one_winner(any_store: TranscriptStore) -> None:
    claims = [_record(ids={"turn_id": f"t{i}"}) for i in range(6)]
    results = await asyncio.gather(
        *(any_store.claim_idempotency(c, live_after=NOW - timedelta(days=1)) for c in claims)
    )
    winners = [c for c, r in zip(claims, results, strict=True) if r is None]
    assert len(winners) == 1
    assert {r.ids["turn_id"] for r in results if r is not None} == {winners[0].ids["turn_id"]}


async def test_expired_idempotency_records_are_ignored_and_purged(
    any_store: TranscriptStore,
) -> None:
    old = _record("old", created_at=NOW - timedelta(hours=25))
    await any_store.claim_idempotency(old, live_after=NOW - timedelta(days=2))
    await any_store.finish_idempotency(old, StoredResponse(status_code=200, body={}))
    await any_store.claim_idempotency(_record("new"), live_after=NOW - timedelta(days=2))
    live = NOW - timedelta(hours=24)
    fresh = _record("old", request_hash="h2", ids={"turn_id": "t2"})
    assert await any_store.claim_idempotency(fresh, live_after=live) is None  # replaced
    assert await any_store.claim_idempotency(_record("old"), live_after=live) == fresh

    await any_store.claim_idempotency(
        _record("older", created_at=NOW - timedelta(days=3)), live_after=NOW - timedelta(days=4)
    )
    assert await any_store.purge_idempotency(created_before=live) == 1
    assert await any_store.claim_idempotency(_record("older"), live_after=live) is None


async def test_forgetting_a_user_deletes_their_idempotency_records(
    any_store: TranscriptStore,
) -> None:
    live = NOW - timedelta(days=1)
    for key, user in (("a", "ann"), ("b", "ann"), ("a", "bob")):
        await any_store.claim_idempotency(_record(key, user=user), live_after=live)
    assert await any_store.delete_user_idempotency("t", "ann") == 2
    assert await any_store.delete_user_idempotency("other", "bob") == 0
    assert await any_store.claim_idempotency(_record("a", user="ann"), live_after=live) is None
    assert await any_store.claim_idempotency(_record("a", user="bob"), live_after=live)


async def test_sqlite_migrates_a_store_of_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(f"BEGIN; {_sqlite.MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    message = _message(0)
    old.execute(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
        ("s", 0, "t1", "user", NOW.isoformat(), message.model_dump_json()),
    )
    old.close()

    store = SqliteTranscriptStore(path)
    try:
        assert await store.messages("s") == [message]
        await store.register_session("s", tenant="t", user_id="u", formation="f")
        assert await store.user_sessions("t", "u") == ["s"]
        assert await store.claim_idempotency(_record(), live_after=NOW) is None
    finally:
        await store.close()
    reopened = sqlite3.connect(path)
    assert reopened.execute("PRAGMA user_version").fetchone()[0] == len(_sqlite.MIGRATIONS)
    reopened.close()


async def test_postgres_migrates_a_store_of_version_1() -> None:
    message = _message(0)
    async with postgres_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            assert await _postgres.migrate(conn, upto=1) == 1
            await conn.execute(
                "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6)",
                "s",
                0,
                "t1",
                "user",
                NOW,
                message.model_dump_json(),
            )
            store = PostgresTranscriptStore(url)
            try:
                assert await store.messages("s") == [message]
                await store.register_session("s", tenant="t", user_id="u", formation="f")
                assert await store.user_sessions("t", "u") == ["s"]
                assert await store.claim_idempotency(_record(), live_after=NOW) is None
            finally:
                await store.close()
            version = await conn.fetchval("SELECT max(version) FROM keel_migrations")
            assert version == len(_postgres.MIGRATIONS)
            assert await _postgres.migrate(conn) == version  # a second start changes nothing
        finally:
            await conn.close()


def test_unknown_store_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        open_store("mysql://db", data_dir=tmp_path)


async def test_cached_answers_are_kept_until_they_expire(any_store: TranscriptStore) -> None:
    now = datetime.now(UTC)
    key = uuid.uuid4().hex
    await any_store.cache_answer(key, '{"content": "a"}', expires_at=now + timedelta(seconds=60))
    assert await any_store.cached_answer(key, now=now) == '{"content": "a"}'
    await any_store.cache_answer(key, '{"content": "b"}', expires_at=now + timedelta(seconds=60))
    assert await any_store.cached_answer(key, now=now) == '{"content": "b"}', "a new one wins"
    assert await any_store.cached_answer(key, now=now + timedelta(seconds=61)) is None
    assert await any_store.cached_answer("other", now=now) is None
