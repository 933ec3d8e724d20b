"""References: large tool results live in the store; history and events carry `{ref, glimpse}`.

Tool activities call `References.keep_out_of_history` on what they are about
to return, before it enters workflow history; the LLM activity calls
`expand_references` to give the model the content back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from keel.messages import Message
from keel.store import TranscriptStore

GLIMPSE_CHARS = 500
"""How much of a referenced content history keeps: enough for a human to see what it was."""
DEFAULT_THRESHOLD_BYTES = 16 * 1024
DEFAULT_INLINE_MAX_CHARS = 64 * 1024
READ_MAX_CHARS = 8000
"""At most this much per `read_reference` call, so its result stays well under the threshold."""
_REFS = uuid.UUID("0f4c8d52-6e1b-4b7e-8f0e-72656673a1b2")


def reference_id(key: str) -> str:
    """A reference id derived from the call's idempotency key: a retry rewrites the same one."""
    return "ref_" + uuid.uuid5(_REFS, key).hex


def glimpse(content: str, ref: str) -> str:
    """The start of `content` and a note on where the rest is."""
    return (
        content[:GLIMPSE_CHARS]
        + f"\n[… {len(content):,} characters in all, kept out of history as reference {ref}]"
    )


class References:
    """Keeps contents over a threshold out of history.

    Args:
        store: the transcript store the references go to (None: keep everything inline).
        threshold_bytes: contents larger than this (UTF-8) become references.
    """

    def __init__(
        self, store: TranscriptStore | None, *, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES
    ) -> None:
        self._store = store
        self._threshold = threshold_bytes

    async def keep_out_of_history(
        self, session: str, key: str, content: str
    ) -> tuple[str, str | None]:
        """Store `content` as a reference if it is large.

        Args:
            session: the session's workflow id (references belong to a session).
            key: an idempotency key of the call that produced the content.
            content: the content.

        Returns:
            `(content, None)` when small, else `(glimpse, ref)`.
        """
        # Cheap test first: a string of n characters has at least n UTF-8 bytes.
        if self._store is None or len(content) * 4 <= self._threshold:
            return content, None
        if len(content.encode()) <= self._threshold:
            return content, None
        ref = reference_id(key)
        await self._store.put_reference(session, ref, content)
        return glimpse(content, ref), ref


def truncated_view(content: str, ref: str, inline_max_chars: int) -> str:
    """The first `inline_max_chars` of a large content, and how to read on."""
    return (
        content[:inline_max_chars]
        + f"\n[… cut at {inline_max_chars:,} of {len(content):,} characters. Call the"
        f" read_reference tool with ref {ref!r} and offset {inline_max_chars} to read on.]"
    )


def read_slice(content: str, ref: str, offset: int, length: int) -> str:
    """Part of a referenced content, for the `read_reference` tool."""
    length = max(1, min(length, READ_MAX_CHARS))
    part = content[offset : offset + length]
    end = offset + len(part)
    more = (
        f"; call read_reference with offset {end} for more"
        if end < len(content)
        else "; that is the end"
    )
    return f"{part}\n[characters {offset:,} to {end:,} of {len(content):,} in {ref}{more}]"


async def expand_references(
    store: TranscriptStore, session: str, messages: Sequence[Message], inline_max_chars: int
) -> tuple[list[Message], bool]:
    """The messages with their references' content in place of the glimpses.

    Returns:
        The messages, and whether any content was cut (then the model needs
        the `read_reference` tool).
    """
    expanded: list[Message] = []
    cut = False
    for message in messages:
        if message.ref is not None:
            content = await store.get_reference(session, message.ref)
            if content is not None:
                if len(content) > inline_max_chars:
                    content = truncated_view(content, message.ref, inline_max_chars)
                    cut = True
                message = message.model_copy(update={"content": content})
        expanded.append(message)
    return expanded, cut
