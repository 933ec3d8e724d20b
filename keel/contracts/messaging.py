"""The messaging activities' contracts: ask another session, publish to a topic."""

from __future__ import annotations

from pydantic import BaseModel, Field

TOPIC_MAX_CHARS = 128


class AskSessionInput(BaseModel):
    """Send a message to another session of the same tenant and wait for its answer."""

    tenant: str
    session_id: str
    message: str
    idempotency_key: str
    """Used as the update id: a retried activity does not send the message twice."""
    from_session: str = ""
    """The asking session's workflow id: a session may not ask itself, nor one asking it."""
    user_id: str | None = None
    """The asking session's user: the target must be theirs too."""
    chain: list[str] = Field(default_factory=list)
    """Workflow ids of the sessions waiting on this ask, the asker's callers included."""


class TopicMessage(BaseModel):
    """A message on a topic, as its subscribers receive it (the `topic_message` signal)."""

    message_id: str
    topic: str = Field(min_length=1, max_length=TOPIC_MAX_CHARS)
    text: str
    from_session: str


class PublishInput(BaseModel):
    """Publish `message` to every running session of `tenant` subscribed to its topic."""

    tenant: str
    message: TopicMessage
