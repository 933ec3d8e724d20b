"""Python function tools: `@keel.tool` makes a typed function a tool the model can call."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import itertools
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import to_json

from keel.formation import FormationError, FormationProblem

__all__ = [
    "BUILTIN_TOOLS",
    "PythonTool",
    "ToolArgumentsError",
    "ToolContext",
    "load_python_tools",
    "python_tools_path",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_TOOLS: frozenset[str] = frozenset({"ask_session", "publish", "remember", "read_reference"})
"""Tools the session workflow runs itself; agents list them like any other tool."""

TOOL_ATTRIBUTE = "__keel_tool__"
"""Where the decorator leaves the tool on the function, for the worker to collect."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_ARGS_HEADERS = ("Args:", "Arguments:", "Parameters:")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class ToolContext:
    """The call a tool serves. A tool gets it by declaring a parameter of this type.

    Attributes:
        idempotency_key: Stable across retries of this call (`session/turn/call`):
            a tool that writes can deduplicate on it.
        session: The session's workflow id.
        turn_id: The turn that made the call.
        call_id: The model's id for the call.
    """

    idempotency_key: str
    session: str
    turn_id: str
    call_id: str


class ToolArgumentsError(ValueError):
    """The model's arguments do not fit the tool's schema; the message names each field."""


@dataclass(frozen=True, eq=False)
class PythonTool:
    """A function made into a tool by `@keel.tool`.

    Attributes:
        name: The name agents list and the model calls.
        description: What the model is told the tool does.
        parameters: The JSON schema of the arguments the model supplies.
        function: The decorated function.
        inject: Parameters the worker fills from its services, not the model.
        timeout_s: Time limit of one call; `None` for the worker's default.
        arguments_model: Validates the model's arguments (the schema's source).
        context_parameter: The parameter that receives the `ToolContext`, if any.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    inject: tuple[str, ...]
    timeout_s: float | None
    arguments_model: type[BaseModel]
    context_parameter: str | None

    async def invoke(
        self,
        arguments: Mapping[str, Any],
        *,
        services: Mapping[str, object],
        context: ToolContext,
    ) -> str:
        """Validate the arguments and call the function; a sync one runs in a thread.

        Args:
            arguments: What the model sent.
            services: The worker's services; `inject` names are looked up here.
            context: The call being served.

        Returns:
            The function's result: a `str` as it is, anything else as JSON.

        Raises:
            ToolArgumentsError: The arguments do not fit the schema.
            Exception: Whatever the function raises.
        """
        try:
            parsed = self.arguments_model.model_validate(arguments)
        except ValidationError as e:
            raise ToolArgumentsError(_describe(e)) from None
        kwargs: dict[str, Any] = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        kwargs |= {name: services[name] for name in self.inject}
        if self.context_parameter:
            kwargs[self.context_parameter] = context
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**kwargs)
        else:
            # A blocking function must not stall the worker's event loop (and its heartbeats).
            result = await asyncio.to_thread(functools.partial(self.function, **kwargs))
            if inspect.isawaitable(result):  # an async callable that does not look like one
                result = await result
        return result if isinstance(result, str) else to_json(result, fallback=str).decode()


@overload
def tool(function: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    inject: Sequence[str] = (),
    timeout_s: float | None = None,
) -> Callable[[F], F]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    inject: Sequence[str] = (),
    timeout_s: float | None = None,
) -> Any:
    """Make a typed function (sync or async) a tool; use as `@tool` or `@tool(...)`.

    The model sees the function's name, the first paragraph of its docstring, and
    a JSON schema built from its parameters' type hints and defaults (descriptions
    come from `Annotated[..., Field(description=...)]` or the docstring's `Args:`).
    The function stays callable as before.

    Args:
        function: The function, when used without parentheses.
        name: The tool's name (default: the function's); letters, digits, `_`, `-`.
        description: What the model is told (default: the docstring's first paragraph).
        inject: Parameters the worker fills from the services it was given (a
            database client, say); they are not part of the schema.
        timeout_s: Time limit of one call (default: the worker's, 60 s).

    Returns:
        The function itself, or a decorator.

    Raises:
        TypeError: A parameter the model cannot supply (`*args`, positional-only),
            or an `inject` name the function lacks.
        ValueError: A name with other characters, or a timeout that is not positive.
    """

    def decorate(fn: F) -> F:
        setattr(
            fn,
            TOOL_ATTRIBUTE,
            _build(fn, name=name, description=description, inject=inject, timeout_s=timeout_s),
        )
        return fn

    return decorate(function) if function is not None else decorate


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    inject: Sequence[str],
    timeout_s: float | None,
) -> PythonTool:
    tool_name = name or fn.__name__
    if not _NAME.match(tool_name):
        raise ValueError(f"tool name {tool_name!r}: use letters, digits, '_' or '-' (64 at most)")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"tool {tool_name!r}: timeout_s must be positive")
    summary, arg_docs = _parse_docstring(fn.__doc__)
    hints = typing.get_type_hints(fn, include_extras=True)
    parameters = inspect.signature(fn).parameters
    missing = [n for n in inject if n not in parameters]
    if missing:
        raise TypeError(f"tool {tool_name!r}: inject names {missing} that are not parameters")
    fields: dict[str, Any] = {}
    context_parameter = None
    for param in parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool {tool_name!r}: parameter {param.name!r} must be passable by keyword"
            )
        hint = hints.get(param.name, Any)
        if hint is ToolContext:
            context_parameter = param.name
        elif param.name not in inject:
            default = ... if param.default is param.empty else param.default
            if isinstance(default, FieldInfo):
                field = default
            elif param.name in arg_docs:
                field = Field(default, description=arg_docs[param.name])
            else:  # no description=None: it would override one given in Annotated
                field = Field(default)
            fields[param.name] = (hint, field)
    model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid"),  # an unknown argument is a mistake to report
        **fields,
    )
    schema = model.model_json_schema()
    schema.pop("title", None)
    return PythonTool(
        name=tool_name,
        description=summary if description is None else description,
        parameters=schema,
        function=fn,
        inject=tuple(inject),
        timeout_s=timeout_s,
        arguments_model=model,
        context_parameter=context_parameter,
    )


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph, and the descriptions in a Google-style `Args:` section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    # The first paragraph ends at a blank line or a section header (`Args:`, `Returns:`).
    first = itertools.takewhile(lambda line: line.strip() and not _SECTION.match(line), lines)
    summary = " ".join(" ".join(first).split())
    args: dict[str, str] = {}
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() in _ARGS_HEADERS), None)
    if start is None:
        return summary, args
    indent: int | None = None
    current: str | None = None
    for line in lines[start:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section
        indent = depth if indent is None else indent
        match = _ARG_LINE.match(line.strip())
        if depth == indent and match:
            current = match.group(1).lstrip("*")
            args[current] = match.group(2)
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return summary, args


def _describe(error: ValidationError) -> str:
    """Each problem as `field: message`, without echoing the (maybe large) input."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def load_python_tools(modules: Sequence[str]) -> dict[str, PythonTool]:
    """Import the formation's `python_tools` modules and collect their tools.

    Args:
        modules: Importable module names, as in the formation.

    Returns:
        Every `@tool` function found at the top level of the modules, by name.

    Raises:
        FormationError: A module cannot be imported, or two tools share a name.
    """
    tools: dict[str, PythonTool] = {}
    problems: list[FormationProblem] = []
    for i, module_name in enumerate(modules):
        where = f"python_tools[{i}]"
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # any error in user code at import time
            problems.append(
                FormationProblem(where, f"cannot import {module_name!r}: {type(e).__name__}: {e}")
            )
            continue
        for value in vars(module).values():
            found = getattr(value, TOOL_ATTRIBUTE, None)
            if not isinstance(found, PythonTool):
                continue
            other = tools.setdefault(found.name, found)
            if other is not found and other.function is not found.function:
                problems.append(FormationProblem(where, f"a second tool is named {found.name!r}"))
    if problems:
        raise FormationError(problems)
    return tools


def python_tools_path(formation: Path | None) -> None:
    """Put the working directory, then the formation file's directory, on the import path.

    The working directory as uvicorn and celery do; the formation's own directory
    so that a formation kept beside its `python_tools` package works from anywhere
    (`keel worker --formation app/formation.yaml`, a mounted config directory).
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if formation is not None:
        directory = str(formation.expanduser().resolve().parent)
        if directory not in sys.path:
            sys.path.insert(sys.path.index(cwd) + 1, directory)
