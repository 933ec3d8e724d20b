"""The response cache: what its key holds, and that a broken cache is no cache."""

from __future__ import annotations

from datetime import UTC, datetime

from activities._cache import RedisAnswers, ResponseCache, request_key
from activities.providers import ModelRequest, ModelResponse
from keel.formation import ModelConfig
from keel.messages import Message, Usage

MODEL = ModelConfig(provider="echo", temperature=0, cache_ttl_s=60)


def _request(text: str = "hi", *, seq: int = 0, turn: str = "t1", **model: object) -> ModelRequest:
    message = Message(
        seq=seq, role="user", content=text, turn_id=turn, created_at=datetime.now(UTC)
    )
    return ModelRequest(
        model=MODEL.model_copy(update=model), system_prompt="Be brief.", messages=[message]
    )


def test_the_key_is_what_the_provider_is_sent() -> None:
    key = request_key(_request(), tenant="a")
    assert request_key(_request(seq=7, turn="t9"), tenant="a") == key, "not seq, turn or time"
    assert request_key(_request(max_attempts=9, timeout_s=5), tenant="a") == key
    assert request_key(_request("other"), tenant="a") != key
    assert request_key(_request(max_tokens=10), tenant="a") != key
    assert request_key(_request(), tenant="b") != key, "tenants never share answers"


async def test_an_unreachable_redis_costs_hits_not_calls() -> None:
    cache = ResponseCache(RedisAnswers("redis://127.0.0.1:1/0"))
    try:
        assert await cache.get(_request(), tenant="a") is None
        await cache.put(_request(), ModelResponse(content="x", usage=Usage()), tenant="a")
    finally:
        await cache.close()
