"""LLM providers: one `complete()` contract over OpenAI, Anthropic and offline stand-ins."""

from __future__ import annotations

# The vendor SDKs take about two seconds to import; importing them here, when the
# worker starts, keeps that off the event loop of the first model call.
from activities.providers._anthropic import AnthropicProvider
from activities.providers._base import ModelRequest, ModelResponse, OnDelta, Provider, ToolSpec
from activities.providers._echo import EchoProvider
from activities.providers._openai import OpenAIProvider
from activities.providers._scripted import ScriptedProvider
from keel.formation import ModelConfig

__all__ = ["ModelRequest", "ModelResponse", "OnDelta", "Provider", "ToolSpec", "get_provider"]


def get_provider(config: ModelConfig) -> Provider:
    """The provider for a model's `provider` setting.

    Cheap to call per request: the HTTP providers share one SDK client per
    endpoint (provider, base URL, key variable, timeout) and event loop.

    Args:
        config: The model's configuration.

    Returns:
        A provider for "openai", "anthropic", "echo" or "scripted".

    Raises:
        ApplicationError: `MissingApiKey` (naming the environment variable) or
            `MissingModel`, both non-retryable.
        ValueError: For an unknown provider name.
    """
    if config.provider == "openai":
        return OpenAIProvider(config)
    if config.provider == "anthropic":
        return AnthropicProvider(config)
    if config.provider == "echo":
        return EchoProvider()
    if config.provider == "scripted":
        return ScriptedProvider()
    raise ValueError(f"unknown provider {config.provider!r}")
