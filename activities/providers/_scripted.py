"""The `scripted` provider: a model you steer from the prompt, for tests and demos.

It never touches a network. It reads directives from the LAST user message of
the request; everything else in that message is ordinary text.

Directives::

    [[call NAME {json object}]]    Ask for tool NAME with these arguments (the JSON
                                   object is optional and defaults to {}). Repeat
                                   for several calls; ids are call_1, call_2, … in
                                   order. NAME is the Keel tool name, dots and all.
    [[say TEXT]]                   The final answer is TEXT (which cannot contain
                                   "]]"; surrounding spaces are trimmed).
    [[json DOCUMENT]]              The final answer is this JSON document (any JSON
                                   value; it may contain "]]"), e.g. a planner's plan.
    [[sleep SECONDS]]              Wait this long (a float) before answering, e.g.
                                   to kill a worker mid-call.
    [[fail STATUS]]                Fail like a vendor answering HTTP STATUS, on
    [[fail STATUS times=N]]        every attempt, or only on attempts 1..N of the
                                   activity (so 503 times=2 succeeds on attempt 3).
                                   Retryability follows the vendor error mapping:
                                   408, 409, 429 and 5xx retry, other 4xx do not.

How it answers:

1. Sleep, then fail, if asked to.
2. With `call` directives and no tool message after the last user message: the
   tool calls, with empty content.
3. Otherwise a final answer: the `say` TEXT if given; else, when tool results
   follow the last user message, ``"tool results: " + "; ".join("NAME -> CONTENT")``;
   else ``"echo: " + <the message>`` like the `echo` provider (with any
   directives cut out of the text).

Example: ``what time is it? [[call time.get_current_time {"tz": "UTC"}]] [[say It is noon.]]``
first asks for the tool, then, once its result is in the transcript, says "It is noon.".

A malformed directive fails the call with a non-retryable `ScriptError`. When
several `say`, `sleep` or `fail` directives are given, the last one counts. The
final answer is streamed word by word when streaming is asked for, and usage is
approximated as in `echo`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.providers._base import ModelRequest, ModelResponse, OnDelta
from activities.providers._echo import offline_usage, stream_text
from activities.providers._errors import status_error
from keel.messages import ToolCall

_HEAD = re.compile(r"\[\[\s*(call|say|json|sleep|fail)\b\s*")
_NAME = re.compile(r"[^\s\]{]+")
_FAIL = re.compile(r"^(\d{3})(?:\s+times=(\d+))?$")
_DECODER = json.JSONDecoder()


@dataclass
class Script:
    """The directives found in one user message."""

    text: str
    """The message with the directives cut out."""
    found: bool = False
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    say: str | None = None
    sleep_s: float = 0.0
    fail_status: int | None = None
    fail_times: int | None = None


def _script_error(message: str) -> ApplicationError:
    return ApplicationError(message, type="ScriptError", non_retryable=True)


def parse_script(text: str) -> Script:
    """Find the directives in a user message.

    Args:
        text: The message content.

    Returns:
        The directives, and the text without them.

    Raises:
        ApplicationError: `ScriptError`, non-retryable, for a malformed directive.
    """
    script = Script(text="")
    kept: list[str] = []
    pos = 0
    while (start := text.find("[[", pos)) >= 0:
        kept.append(text[pos:start])
        head = _HEAD.match(text, start)
        if head is None:
            # Not ours: keep a literal "[[" in the text.
            kept.append("[[")
            pos = start + 2
            continue
        script.found = True
        kind, cursor = head.group(1), head.end()
        if kind == "call":
            cursor = _parse_call(text, cursor, script)
        elif kind == "json":
            cursor = _parse_json(text, cursor, script)
        else:
            end = text.find("]]", cursor)
            if end < 0:
                raise _script_error(f"unclosed [[{kind} directive")
            _apply(kind, text[cursor:end].strip(), script)
            cursor = end + 2
        pos = cursor
    kept.append(text[pos:])
    script.text = "".join(kept)
    return script


def _parse_call(text: str, cursor: int, script: Script) -> int:
    name = _NAME.match(text, cursor)
    if name is None:
        raise _script_error("[[call needs a tool name")
    cursor = _skip_spaces(text, name.end())
    arguments: Any = {}
    if text.startswith("{", cursor):
        # raw_decode, not a regex up to "]]": JSON arguments may hold "]]" themselves.
        try:
            arguments, cursor = _DECODER.raw_decode(text, cursor)
        except ValueError as e:
            raise _script_error(f"[[call {name.group()}: bad JSON arguments: {e}") from e
        if not isinstance(arguments, dict):
            raise _script_error(f"[[call {name.group()}: arguments must be a JSON object")
        cursor = _skip_spaces(text, cursor)
    if not text.startswith("]]", cursor):
        raise _script_error(f"[[call {name.group()}: expected ']]' at offset {cursor}")
    script.calls.append((name.group(), arguments))
    return cursor + 2


def _parse_json(text: str, cursor: int, script: Script) -> int:
    try:
        document, cursor = _DECODER.raw_decode(text, cursor)
    except ValueError as e:
        raise _script_error(f"[[json: bad JSON: {e}") from e
    cursor = _skip_spaces(text, cursor)
    if not text.startswith("]]", cursor):
        raise _script_error(f"[[json: expected ']]' at offset {cursor}")
    script.say = json.dumps(document)
    return cursor + 2


def _skip_spaces(text: str, cursor: int) -> int:
    while cursor < len(text) and text[cursor].isspace():
        cursor += 1
    return cursor


def _apply(kind: str, body: str, script: Script) -> None:
    if kind == "say":
        script.say = body
    elif kind == "sleep":
        try:
            script.sleep_s = max(0.0, float(body))
        except ValueError as e:
            raise _script_error(f"[[sleep needs seconds, got {body!r}") from e
    else:
        match = _FAIL.match(body)
        if match is None:
            raise _script_error(f"[[fail needs STATUS [times=N], got {body!r}")
        script.fail_status = int(match.group(1))
        script.fail_times = int(match.group(2)) if match.group(2) else None


class ScriptedProvider:
    """Follows the directives in the last user message (see the module docstring)."""

    async def complete(
        self, request: ModelRequest, *, on_delta: OnDelta | None = None
    ) -> ModelResponse:
        """Answer as the last user message's directives say.

        Args:
            request: The model request; `attempt` drives `fail times=N`.
            on_delta: Receives the final answer word by word when given.

        Returns:
            Tool calls or a final answer, with approximate usage.

        Raises:
            ApplicationError: From `[[fail ...]]`, or `ScriptError` for bad directives.
        """
        last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
        content = request.messages[last_user].content if last_user >= 0 else ""
        script = parse_script(content)
        results = [m for m in request.messages[last_user + 1 :] if m.role == "tool"]

        if script.sleep_s:
            await asyncio.sleep(script.sleep_s)
        if script.fail_status is not None and (
            script.fail_times is None or request.attempt <= script.fail_times
        ):
            raise status_error(
                "scripted", script.fail_status, f"scripted failure on attempt {request.attempt}"
            )

        if script.calls and not results:
            calls = [
                ToolCall(id=f"call_{i}", name=name, arguments=arguments)
                for i, (name, arguments) in enumerate(script.calls, start=1)
            ]
            spoken = json.dumps([[c.name, c.arguments] for c in calls])
            return ModelResponse(
                tool_calls=calls,
                usage=offline_usage(request, spoken),
                stop_reason="tool_calls",
            )

        if script.say is not None:
            answer = script.say
        elif results:
            answer = "tool results: " + "; ".join(f"{m.name} -> {m.content}" for m in results)
        else:
            answer = "echo: " + (script.text.strip() if script.found else content)
        await stream_text(answer, on_delta)
        return ModelResponse(
            content=answer, usage=offline_usage(request, answer), stop_reason="stop"
        )
