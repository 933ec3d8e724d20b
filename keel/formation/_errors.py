"""Formation problems: the error type, field paths, and pydantic error conversion."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]
"""A field path as pydantic writes it: `("agents", 1, "routes", 0)`."""

PROBLEMS_ERROR_TYPE = "keel_formation"
"""The pydantic error type our validators raise; its context carries `(loc, message)` pairs."""

INTERPOLATED_CONTEXT_KEY = "keel_interpolated"
"""Validation-context key holding the locs whose strings came from `${VAR}` interpolation."""

NAME_RULE = "must start with a letter, then letters, digits, '_' or '-' (64 at most)"
"""Why a name of an agent, model, server, trigger or formation was refused."""

_LABELLED = frozenset({"agents", "mcp_servers", "triggers"})
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class FormationProblem:
    """One thing wrong with a formation.

    Attributes:
        path: Where it is, e.g. `agents[1] (billing).routes[0]`; empty for the whole file.
        message: What is wrong, never quoting a value that came from the environment.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FormationError(Exception):
    """A formation that cannot be used; `str()` gives one line per problem.

    Attributes:
        problems: Every problem found (at least one).
        source: The file the formation came from, if any; it prefixes each line.
    """

    def __init__(self, problems: Sequence[FormationProblem], source: str | None = None) -> None:
        self.problems: list[FormationProblem] = list(problems)
        self.source = source
        super().__init__(self.problems, source)

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{problem}" for problem in self.problems)


UNION_TAG = "~"
"""Tags of the formation's tagged unions start with it (`Tag("~gate")`)."""


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, BaseModel):
        return getattr(node, part, None) if isinstance(part, str) else None
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, Sequence) and not isinstance(node, str) and isinstance(part, int):
        return node[part] if -len(node) <= part < len(node) else None
    return None


def format_path(loc: Loc, data: Any = None, hidden: Collection[Loc] = ()) -> str:
    """Write a loc as a readable path, naming agents, servers and triggers.

    Args:
        loc: The path as a tuple of keys and list indexes.
        data: The formation (raw mapping or model) the loc points into, for names.
        hidden: Locs whose values came from the environment; such names are not shown.

    Returns:
        A path like `agents[1] (billing).routes[0]` or `approvals.tools['time.now']`.
    """
    out: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
        node = _child(node, part)
        if i == 1 and isinstance(part, int) and loc[0] in _LABELLED:
            name = _child(node, "name")
            if (
                isinstance(name, str)
                and name.isprintable()
                and 0 < len(name) <= 64
                and (*loc[:2], "name") not in hidden
            ):
                out.append(f" ({name})")
    return "".join(out)


def problems_error(
    problems: Iterable[tuple[Loc, str]], data: Any = None, hidden: Collection[Loc] = ()
) -> PydanticCustomError:
    """The error a validator raises to report several problems with their own paths.

    Args:
        problems: `(loc relative to the validated model, message)` pairs.
        data: The validated model, used to name agents in the summary.
        hidden: Locs whose values came from the environment.

    Returns:
        A `PydanticCustomError` that `problems_from_validation_error` expands again.
    """
    items = [(tuple(loc), message) for loc, message in problems]
    summary = "; ".join(
        str(FormationProblem(format_path(loc, data, hidden), msg)) for loc, msg in items
    )
    return PydanticCustomError(
        PROBLEMS_ERROR_TYPE, "{summary}", {"summary": summary, "problems": items}
    )


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class a loc points at, following fields, lists and dicts."""
    tp: Any = root
    for part in loc:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _message(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """A problem message built from pydantic's `msg` and type, never from `input`."""
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        model = _model_at(root, loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(loc[-1], known, n=1)
        if close:
            return f"unknown key; did you mean '{close[0]}'?"
        return f"unknown key (allowed: {', '.join(known)})" if known else "unknown key"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch":  # only names have patterns
        return NAME_RULE
    msg = str(error["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def problems_from_validation_error(
    exc: ValidationError,
    root: type[BaseModel],
    data: Any = None,
    hidden: Collection[Loc] = (),
) -> list[FormationProblem]:
    """Turn a pydantic error into problems with readable paths and value-free messages.

    Args:
        exc: The error from validating `data` as `root`.
        root: The model class that was validated.
        data: The raw input, used to name agents in paths.
        hidden: Locs whose values came from the environment.

    Returns:
        One problem per pydantic error, with our validators' problem lists expanded.
    """
    problems: list[FormationProblem] = []
    for error in exc.errors(include_url=False, include_input=False):
        # A tagged union's tag is no key of the file: leave it out of the path.
        error["loc"] = tuple(p for p in error["loc"] if not str(p).startswith(UNION_TAG))
        loc = tuple(error["loc"])
        if error["type"] == PROBLEMS_ERROR_TYPE:
            for rel, message in error["ctx"]["problems"]:
                problems.append(FormationProblem(format_path(loc + rel, data, hidden), message))
        else:
            problems.append(FormationProblem(format_path(loc, data, hidden), _message(error, root)))
    return problems
