"""Request and response bodies of the OpenAI-compatible routes, as OpenAI's API spells them.

Requests take what OpenAI's clients send and keep what Keel can honour; fields
Keel has no use for (`temperature`, `max_tokens`, `user`, …) are accepted and
ignored, since the agent's model settings are the formation's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import JsonObject

MAX_TEXT = 1_000_000
"""Longest text field; the message limits the API enforces are smaller (see `api._limits`)."""
ShortText = Annotated[str, Field(max_length=256)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


class ContentPart(BaseModel):
    """One part of a message's content: Keel reads text only."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: Text


class ChatMessageIn(BaseModel):
    """One message of a request. No tool messages or tool calls: tools run inside Keel."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[ContentPart], Field(max_length=256)] | None = None
    """Text, or parts of text (joined)."""
    tool_calls: list[JsonObject] | None = Field(default=None, max_length=0)
    """Not taken: Keel runs the agent's tools itself, and a client never sees their calls."""

    @property
    def text(self) -> str:
        """The message's text: its content, or its parts' text joined."""
        content = self.content
        if content is None or isinstance(content, str):
            return content or ""
        return "".join(part.text for part in content)

    @property
    def is_turn(self) -> bool:
        """Whether this message can be the new turn: the user's, with text."""
        return self.role == "user" and bool(self.text.strip())


class StreamOptions(BaseModel):
    """`stream_options`."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False
    """Send a last chunk with the turn's `usage` (and empty `choices`)."""


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`."""

    model_config = ConfigDict(extra="allow")

    name: ShortText = "response"
    schema_: JsonObject = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class TextFormat(BaseModel):
    """`response_format` `text`: free text (the default)."""

    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    """`response_format` `json_object`: any JSON object."""

    type: Literal["json_object"]


class JsonSchemaResponseFormat(BaseModel):
    """`response_format` `json_schema`: JSON that fits the schema (Keel's structured output)."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]

_HAS_TEXT: dict[str, Any] = {"type": "string", "pattern": r"\S"}
_HAS_TURN: dict[str, Any] = {
    "contains": {
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "user"},
            "content": {
                "anyOf": [
                    _HAS_TEXT,
                    {
                        "type": "array",
                        "contains": {"required": ["text"], "properties": {"text": _HAS_TEXT}},
                    },
                ]
            },
        },
    }
}
"""A user message with text among the messages (`ChatMessageIn.is_turn`), as JSON Schema."""


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    """The agent that answers (`GET /v1/models` lists them)."""
    messages: list[ChatMessageIn] = Field(
        min_length=1, max_length=4096, json_schema_extra=_HAS_TURN
    )
    """The last user message with text is the new turn. Without `X-Keel-Session-Id` the
    messages before it start the new session's transcript; with it, the session's own
    transcript is the history. System and developer messages add to the agent's
    instructions (of a new session); messages without text, and those after the turn's
    (but system ones), are left out."""
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    """Only 1: an agent's turn has one answer."""
    tools: list[JsonObject] | None = Field(default=None, max_length=0)
    """None: the agent's own tools run inside Keel (the formation names them)."""
    wait_s: float = Field(default=120, gt=0, le=3600)
    """Keel's own: without `stream`, how long to wait for the answer (a tool call may
    wait for a person's approval) before answering 409 `approval_pending` or
    `turn_pending`. Sent with the OpenAI client's `extra_body`."""

    @field_validator("messages")
    @classmethod
    def _has_turn(cls, messages: list[ChatMessageIn]) -> list[ChatMessageIn]:
        if not any(m.is_turn for m in messages):
            raise ValueError("needs a user message with text: the last one is the new turn")
        return messages


class AssistantMessage(BaseModel):
    """The answer's message."""

    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class CompletionUsage(BaseModel):
    """The turn's tokens: every model call of the turn, tool steps included."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A turn's answer, as `chat.completion`. `id` is `chatcmpl-<turn id>`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ChunkDelta(BaseModel):
    """What a chunk adds to the answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One frame of a streamed answer, as `chat.completion.chunk`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class ModelOut(BaseModel):
    """An agent, as OpenAI lists a model."""

    id: str
    object: Literal["model"] = "model"
    created: int
    """When this API process loaded its formation (Unix seconds)."""
    owned_by: Literal["keel"] = "keel"


class ModelList(BaseModel):
    """`GET /v1/models`."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIErrorDetail(BaseModel):
    """What went wrong, in OpenAI's words."""

    message: str
    type: str
    """`invalid_request_error`, `authentication_error`, `permission_error`,
    `rate_limit_error` or `server_error`."""
    code: str | None = None
    """What a program can match: `model_not_found`, `invalid_api_key`, `approval_pending`, …"""
    param: str | None = None
    """The request field at fault, when one is (`messages`, `model`, …)."""
    session_id: str | None = None
    """Keel's own, for an answer still pending: the session and turn to follow up on."""
    turn_id: str | None = None
    approval_ids: list[str] | None = None


class OpenAIError(BaseModel):
    """Every error of these routes: `{"error": {...}}`."""

    error: OpenAIErrorDetail


def usage_of(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    """OpenAI's usage, with the total it adds."""
    return CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
