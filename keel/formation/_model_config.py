"""A model endpoint of the formation, with what keeps a turn going when its provider fails."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keel.formation._errors import problems_error
from keel.formation._pricing import ModelPricing

ProviderName = Literal["openai", "anthropic", "echo", "scripted"]


class StrictModel(BaseModel):
    """A formation section: frozen, and a typo in a key fails loudly instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CircuitBreakerConfig(StrictModel):
    """Stop calling a failing provider for a while, per model and per worker.

    After `failures` failed calls (5xx, timeouts, refused connections, 429) within
    `window_s`, the circuit opens: for `open_s` no call reaches the provider, each
    fails at once (so the turn moves to the model's `fallbacks`). Then one probe call
    goes through; its success closes the circuit, its failure opens it again.
    """

    failures: int = Field(default=5, ge=1, le=10_000)
    window_s: float = Field(default=30, gt=0, le=86_400)
    open_s: float = Field(default=30, gt=0, le=86_400)


class ModelConfig(StrictModel):
    """One model endpoint. Holds env var *names*, never secret values."""

    provider: ProviderName
    model: str | None = None
    """The vendor's model id; required for `openai` and `anthropic`."""
    base_url: str | None = None
    """Any OpenAI-compatible server (vLLM, llama.cpp, Ollama), or an Anthropic proxy."""
    api_key_env: str | None = None
    """Environment variable the worker reads the key from (default per provider)."""
    task_queue: str | None = None
    """Run this model's calls only on workers polling this queue (e.g. GPU workers)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=120, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=100)
    fallbacks: list[str] = Field(default_factory=list)
    """Models (names in `models`) tried in order once this one's attempts are spent or
    its circuit is open; the turn then goes on with the first that answers."""
    circuit_breaker: CircuitBreakerConfig | None = None
    """Off unless set (`circuit_breaker: {}` takes the defaults)."""
    cache_ttl_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    """Keep answers to identical requests this long, and answer repeats from the cache;
    needs `temperature: 0`. In Redis when `KEEL_REDIS_URL` is set, else the store."""
    pricing: ModelPricing | None = None
    """USD per million tokens; sets `cost_usd` in every call's usage (0 without it)."""

    @model_validator(mode="after")
    def _check_model_id(self) -> Self:
        if self.provider in ("openai", "anthropic") and not self.model:
            raise problems_error([(("model",), f"required for provider '{self.provider}'")])
        if self.cache_ttl_s is not None and self.temperature != 0:
            # Answers at another temperature vary on purpose: a cache would fix one of them.
            raise problems_error([(("cache_ttl_s",), "caches only answers at temperature: 0")])
        return self

    @property
    def caches(self) -> bool:
        """Whether answers of this model are cached: a TTL is set and the temperature is 0."""
        return self.cache_ttl_s is not None and self.temperature == 0
