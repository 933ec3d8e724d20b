"""Loading a formation: read YAML, interpolate `${VAR}`, validate, report every problem."""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from keel.formation._errors import (
    INTERPOLATED_CONTEXT_KEY,
    FormationError,
    FormationProblem,
    Loc,
    format_path,
    problems_from_validation_error,
)
from keel.formation._models import Formation

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly and concisely."

# `$${` is an escaped, literal `${`; `${...}` is a reference (its `}` may be missing).
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_MAX_DEPTH = 32
_YAML_TYPES = {dict: "mapping", list: "list", str: "string", int: "number", float: "number"}


def load_formation(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Formation:
    """Load and validate a formation file, or give the built-in default formation.

    Args:
        path: The YAML file; `None` for `default_formation(env)`.
        env: Where `${VAR}` references are looked up; defaults to `os.environ`.

    Returns:
        The validated formation.

    Raises:
        FormationError: The file cannot be read, is not valid YAML, or breaks a rule;
            every problem found is listed, each line prefixed with the file name.
    """
    if path is None:
        return default_formation(env)
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        reason = "file not found"
    except IsADirectoryError:
        reason = "is a directory, not a file"
    except PermissionError:
        reason = "permission denied"
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
    else:
        return parse_formation(text, env=env, source=source)
    raise FormationError([FormationProblem("", f"cannot read the formation: {reason}")], source)


def parse_formation(
    text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Formation:
    """Validate a formation given as YAML text.

    Args:
        text: The YAML document.
        env: Where `${VAR}` references are looked up; defaults to `os.environ`.
        source: A name for the text (usually its file) that prefixes error lines.

    Returns:
        The validated formation.

    Raises:
        FormationError: The text is not valid YAML or breaks a rule.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as exc:
        problem = _yaml_problem(exc)
    except yaml.YAMLError as exc:
        problem = FormationProblem("", f"invalid YAML: {str(exc).splitlines()[0]}")
    else:
        return formation_from_data(data, env=env, source=source)
    raise FormationError([problem], source)


def formation_from_data(
    data: object, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Formation:
    """Interpolate `${VAR}` in parsed YAML (or any plain data) and validate it.

    Args:
        data: What `yaml.safe_load` returned: a mapping at the top level.
        env: Where `${VAR}` references are looked up; defaults to `os.environ`.
        source: A name for the data that prefixes error lines.

    Returns:
        The validated formation.

    Raises:
        FormationError: A variable is unset, or the data breaks a rule.
    """
    if data is None:
        raise FormationError([FormationProblem("", "the formation is empty")], source)
    if not isinstance(data, Mapping):
        kind = _YAML_TYPES.get(type(data), type(data).__name__)
        message = f"the top level must be a mapping (models, agents, …), not a {kind}"
        raise FormationError([FormationProblem("", message)], source)
    interpolation = _Interpolation(os.environ if env is None else env)
    resolved = interpolation.walk(data, ())
    hidden = frozenset(interpolation.hidden)
    if interpolation.problems:
        problems = [
            FormationProblem(format_path(loc, resolved, hidden), message)
            for loc, message in interpolation.problems
        ]
        raise FormationError(problems, source)
    try:
        return Formation.model_validate(resolved, context={INTERPOLATED_CONTEXT_KEY: hidden})
    except ValidationError as exc:
        problems = problems_from_validation_error(exc, Formation, resolved, hidden)
    problems = [_redact(problem, interpolation.values) for problem in problems]
    raise FormationError(problems, source)


def default_formation(env: Mapping[str, str] | None = None) -> Formation:
    """The built-in formation: one agent `assistant` on OpenAI if a key is set, else echo.

    Args:
        env: Where `OPENAI_API_KEY` is looked for; defaults to `os.environ`.

    Returns:
        Formation `default` with agent `assistant` using model `default`, which is
        `gpt-4o-mini` on OpenAI when `OPENAI_API_KEY` is set and non-empty, else `echo`.
    """
    env = os.environ if env is None else env
    if env.get("OPENAI_API_KEY"):
        model: dict[str, Any] = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "api_key_env": "OPENAI_API_KEY",
        }
    else:
        model = {"provider": "echo"}
    agent = {
        "name": "assistant",
        "description": "A helpful assistant",
        "system_prompt": DEFAULT_SYSTEM_PROMPT,
        "model": "default",
    }
    return Formation.model_validate(
        {"id": "default", "models": {"default": model}, "agents": [agent]}
    )


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys, which would silently drop a section."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key '{key_node.value}'",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> FormationProblem:
    """A YAML error as one line with its position, without the file snippet."""
    reason = exc.problem or exc.context or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return FormationProblem("", f"invalid YAML{where}: {reason}")


def _redact(problem: FormationProblem, values: set[str]) -> FormationProblem:
    """A last guard: blank out any interpolated value of 8+ characters in a message."""
    message = problem.message
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 8 and value in message:
            message = message.replace(value, "<redacted>")
    return FormationProblem(problem.path, message)


class _Interpolation:
    """Replaces `${VAR}` and `${VAR:-default}` in string values (not keys) from `env`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[Loc, str]] = []
        self.hidden: set[Loc] = set()
        """Locs whose strings contain a reference: messages must not quote them."""
        self.values: set[str] = set()
        """Values taken from `env`, which may be secrets."""

    def walk(self, node: Any, loc: Loc) -> Any:
        """`node` with every string value interpolated; problems are collected."""
        if isinstance(node, str):
            return self.string(node, loc) if "${" in node else node
        if len(loc) > _MAX_DEPTH:  # also stops at a YAML alias that contains itself
            self.problems.append((loc, f"nested more than {_MAX_DEPTH} levels deep"))
            return None
        if isinstance(node, Mapping):
            return {key: self.walk(value, (*loc, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [self.walk(item, (*loc, i)) for i, item in enumerate(node)]
        return node

    def string(self, text: str, loc: Loc) -> str:
        """One string value with its references replaced."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            self.hidden.add(loc)
            body = _BODY.fullmatch(match.group(1))
            if not match.group(2):
                self.problems.append((loc, "'${' is not closed; write '$${' for a literal '${'"))
            elif body is None:
                self.problems.append(
                    (loc, "malformed reference; write ${NAME} or ${NAME:-default}")
                )
            else:
                name, default = body.group(1), body.group(2)
                value = self.env.get(name)
                if default is not None and not value:
                    return default
                if value is not None:
                    self.values.add(value)
                    return value
                hint = f"set it, or write ${{{name}:-default}}"
                self.problems.append((loc, f"environment variable {name} is not set; {hint}"))
            return ""

        return _REFERENCE.sub(replace, text)
