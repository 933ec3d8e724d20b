"""The `echo` provider: answers without a network, for demos and tests."""

from __future__ import annotations

import re

from activities.providers._base import ModelRequest, ModelResponse, OnDelta
from keel.messages import Usage

_WORD_PIECES = re.compile(r"\S+\s*|\s+")


def approx_tokens(text: str) -> int:
    """A rough token count, about four characters a token.

    Args:
        text: Any text.

    Returns:
        At least 1.
    """
    return max(1, len(text) // 4)


def word_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly `text`.

    Args:
        text: The text to stream.

    Returns:
        Each word with the whitespace after it (leading whitespace on its own).
    """
    return _WORD_PIECES.findall(text)


def last_user_text(request: ModelRequest) -> str:
    """The content of the request's last user message.

    Args:
        request: The model request.

    Returns:
        The text, or "" when there is no user message.
    """
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


def offline_usage(request: ModelRequest, answer: str) -> Usage:
    """Approximate usage for providers that do not count tokens (marked `estimated`).

    Args:
        request: The prompt, counted over the system prompt and all message text.
        answer: The completion text.

    Returns:
        Approximate prompt and completion token counts.
    """
    prompt = (request.system_prompt or "") + "".join(m.content for m in request.messages)
    return Usage(
        prompt_tokens=approx_tokens(prompt), completion_tokens=approx_tokens(answer), estimated=True
    )


async def stream_text(text: str, on_delta: OnDelta | None) -> None:
    """Pass `text` to `on_delta` word by word, if there is an `on_delta`.

    Args:
        text: The answer.
        on_delta: The streaming callback, or None.
    """
    if on_delta is None:
        return
    for piece in word_pieces(text):
        await on_delta(piece)


class EchoProvider:
    """Answers `"echo: " + <last user message>`."""

    async def complete(
        self, request: ModelRequest, *, on_delta: OnDelta | None = None
    ) -> ModelResponse:
        """Echo the last user message.

        Args:
            request: The model request.
            on_delta: Receives the answer word by word when given.

        Returns:
            The echoed answer with approximate usage.
        """
        answer = "echo: " + last_user_text(request)
        await stream_text(answer, on_delta)
        return ModelResponse(
            content=answer, usage=offline_usage(request, answer), stop_reason="stop"
        )
