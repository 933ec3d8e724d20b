"""Tests for formation loading: interpolation, validation rules and error reports."""

from __future__ import annotations

import copy
import os
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from keel.formation import (
    Formation,
    FormationError,
    FormationProblem,
    PlanApprovalConfig,
    default_formation,
    load_formation,
    parse_formation,
)
from keel.session import new_session_input

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "formation.yaml"
SECRET = "s3cr3t-token-do-not-print"
DELETE = object()

# A small valid formation; each rule case below changes one thing in a copy of it.
BASE: dict[str, Any] = {
    "models": {"default": {"provider": "echo"}},
    "agents": [
        {"name": "triage", "role": "coordinator", "routes": ["billing"]},
        {"name": "billing", "tools": ["time.now", "lookup_invoice"]},
    ],
    "mcp_servers": [{"name": "time", "transport": "stdio", "command": "mcp-server-time"}],
    "approvals": {"tools": {"lookup_invoice": "always"}},
    "triggers": [{"name": "daily", "agent": "billing", "template": "Report"}],
}


def changed(**changes: Any) -> dict[str, Any]:
    """A copy of BASE with changes; keys are paths like `agents__1__role`."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split("__")]
        node: Any = data
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


def write(tmp_path: Path, data: Any, name: str = "formation.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def load_error(path: Path, env: dict[str, str] | None = None) -> FormationError:
    with pytest.raises(FormationError) as info:
        load_formation(path, env=env or {})
    return info.value


def test_example_formation_loads() -> None:
    formation = load_formation(EXAMPLE, env={})
    assert formation.id == "demo"
    assert formation.default_agent.name == "triage"
    assert formation.models["local"].task_queue == "keel-llm-gpu"
    assert formation.models["default"].model == "gpt-4o-mini"
    assert formation.unresolved_tools({"lookup_invoice"}) == []


def test_base_formation_is_valid(tmp_path: Path) -> None:
    formation = load_formation(write(tmp_path, BASE), env={})
    assert [agent.name for agent in formation.agents] == ["triage", "billing"]


@pytest.mark.parametrize(
    ("env", "provider", "model"),
    [
        ({}, "echo", None),
        ({"OPENAI_API_KEY": ""}, "echo", None),
        ({"OPENAI_API_KEY": "sk-test"}, "openai", "gpt-4o-mini"),
    ],
)
def test_default_formation(env: dict[str, str], provider: str, model: str | None) -> None:
    for formation in (default_formation(env), load_formation(None, env=env)):
        assert formation.id == "default"
        assert [agent.name for agent in formation.agents] == ["assistant"]
        agent = formation.default_agent
        assert agent.description == "A helpful assistant"
        assert agent.system_prompt
        config = formation.model_for(agent)
        assert (config.provider, config.model) == (provider, model)
        if provider == "openai":
            assert config.api_key_env == "OPENAI_API_KEY"


def test_interpolation(tmp_path: Path) -> None:
    text = """
models:
  default: {provider: openai, model: "${MODEL}", api_key_env: "${KEY_ENV:-OPENAI_API_KEY}"}
agents:
  - name: assistant
    description: "${DESCRIPTION:-the default}"
    system_prompt: "Write $${HOME} literally; ${EMPTY:-fallback}; [${EMPTY}]"
    max_steps: "${STEPS:-3}"
mcp_servers:
  - name: docs
    transport: http
    url: "${DOCS_URL}"
    headers: {Authorization: "Bearer ${TOKEN}", "${NOT_A_KEY}": "x"}
"""
    env = {"MODEL": "gpt-x", "EMPTY": "", "DOCS_URL": "http://docs/mcp", "TOKEN": SECRET}
    formation = load_formation(write(tmp_path, text), env=env)
    agent = formation.agents[0]
    assert formation.models["default"].model == "gpt-x"
    assert formation.models["default"].api_key_env == "OPENAI_API_KEY"
    assert agent.description == "the default"
    assert agent.system_prompt == "Write ${HOME} literally; fallback; []"
    assert agent.max_steps == 3
    assert formation.mcp_servers[0].headers == {
        "Authorization": f"Bearer {SECRET}",
        "${NOT_A_KEY}": "x",  # keys are not interpolated
    }


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_TEST_MODEL", "from-os")
    data = changed(models={"default": {"provider": "openai", "model": "${KEEL_TEST_MODEL}"}})
    assert load_formation(write(tmp_path, data)).models["default"].model == "from-os"


def test_missing_variable_names_variable_and_path(tmp_path: Path) -> None:
    data = changed(agents__1__system_prompt="Use ${PRESENT} and ${ABSENT}")
    path = write(tmp_path, data)
    error = load_error(path, env={"PRESENT": SECRET})
    assert error.problems == [
        FormationProblem(
            "agents[1] (billing).system_prompt",
            "environment variable ABSENT is not set; set it, or write ${ABSENT:-default}",
        )
    ]
    assert str(error).startswith(f"{path}: agents[1] (billing).system_prompt: ")
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"models__default__temperature": "${SECRET}"}, "models.default.temperature: "),
        ({"agents__1__max_steps": "${SECRET}"}, "agents[1] (billing).max_steps: "),
        ({"agents__1__name": "${SECRET} x"}, "agents[1].name: must start with a letter"),
        ({"agents__0__routes": ["${SECRET}"]}, "route <from the environment> names no agent"),
        ({"agents__1__model": "${SECRET}"}, "model <from the environment> is not in models"),
        ({"memory": {"store": "mysql://u:${SECRET}@db/keel"}}, "memory.store: must start"),
        ({"agents__1__tools": ["${SECRET}.x"]}, "tool <from the environment> names MCP"),
        (
            {"mcp_servers__0__headers": {"Authorization": "Bearer ${SECRET}"}},
            "mcp_servers[0] (time).headers: only for transport 'http'",
        ),
    ],
)
def test_interpolated_secret_never_appears_in_errors(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    error = load_error(write(tmp_path, changed(**changes)), env={"SECRET": SECRET})
    assert expected in str(error)
    shown = [str(error), repr(error), repr(error.problems), *traceback.format_exception(error)]
    assert not any(SECRET in text for text in shown)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"agents__1__role": "coordinator"},
            "agents[1] (billing).role: only one agent may be the coordinator; "
            "agents[0] (triage) is",
            id="two-coordinators",
        ),
        pytest.param(
            {"agents__0__routes": ["triage"]},
            "agents[0] (triage).routes[0]: an agent cannot route to itself",
            id="route-to-self",
        ),
        pytest.param(
            {"agents__0__routes": ["x"]},
            "agents[0] (triage).routes[0]: route 'x' names no agent",
            id="unknown-route",
        ),
        pytest.param(
            {"agents__0__routes": ["billing", "billing"]},
            "agents[0] (triage).routes[1]: route 'billing' is listed twice",
            id="duplicate-route",
        ),
        pytest.param(
            {"agents__1__model": "gpt"},
            "agents[1] (billing).model: model 'gpt' is not in models (default)",
            id="unknown-model",
        ),
        pytest.param(
            {"agents__1__tools": ["weather.now"]},
            "agents[1] (billing).tools[0]: tool 'weather.now' names MCP server 'weather'",
            id="unknown-mcp-server",
        ),
        pytest.param(
            {"agents__1__tools": ["time."]},
            "agents[1] (billing).tools[0]: tool 'time.' must be `server.tool`",
            id="malformed-tool-ref",
        ),
        pytest.param(
            {"agents__0__name": "billing", "agents__0__routes": []},
            "agents[1] (billing).name: agent name 'billing' is already used by agents[0]",
            id="duplicate-agent-names",
        ),
        pytest.param(
            {"mcp_servers__0__command": DELETE},
            "mcp_servers[0] (time).command: required for transport 'stdio'",
            id="stdio-without-command",
        ),
        pytest.param(
            {"mcp_servers__0__url": "http://x/mcp"},
            "mcp_servers[0] (time).url: only for transport 'http'",
            id="stdio-with-url",
        ),
        pytest.param(
            {"mcp_servers": [{"name": "time", "transport": "http", "command": "x"}]},
            "mcp_servers[0] (time).url: required for transport 'http'",
            id="http-without-url",
        ),
        pytest.param(
            {"mcp_servers": BASE["mcp_servers"] * 2},
            "mcp_servers[1] (time).name: MCP server name 'time' is already used by mcp_servers[0]",
            id="duplicate-mcp-server",
        ),
        pytest.param(
            {"agnets": BASE["agents"]},
            "agnets: unknown key; did you mean 'agents'?",
            id="typo-top-level",
        ),
        pytest.param(
            {"agents__1__max_step": 3},
            "agents[1] (billing).max_step: unknown key; did you mean 'max_steps'?",
            id="typo-in-agent",
        ),
        pytest.param(
            {"agents__1__max_steps": "lots"},
            "agents[1] (billing).max_steps: input should be a valid integer",
            id="bad-max-steps-type",
        ),
        pytest.param(
            {"agents__1__max_steps": 0},
            "agents[1] (billing).max_steps: input should be greater than or equal to 1",
            id="max-steps-too-small",
        ),
        pytest.param(
            {"agents__1__name": "no spaces"},
            "agents[1] (no spaces).name: must start with a letter",
            id="bad-agent-name",
        ),
        pytest.param(
            {"models": {"default": {"provider": "openai"}}},
            "models.default.model: required for provider 'openai'",
            id="openai-without-model",
        ),
        pytest.param(
            {"models": {"default": {"provider": "gemini"}}},
            "models.default.provider: input should be 'openai', 'anthropic', 'echo'",
            id="unknown-provider",
        ),
        pytest.param({"models": {}}, "models: define at least one model", id="no-models"),
        pytest.param(
            {"models__default__fallbacks": ["spare"]},
            "models.default.fallbacks[0]: model 'spare' is not in models",
            id="unknown-fallback",
        ),
        pytest.param(
            {"models__default__fallbacks": ["default"]},
            "models.default.fallbacks[0]: a model cannot fall back to itself",
            id="fallback-to-itself",
        ),
        pytest.param(
            {"models__default__cache_ttl_s": 60},
            "models.default.cache_ttl_s: caches only answers at temperature: 0",
            id="cache-without-temperature-0",
        ),
        pytest.param(
            {"models__default__circuit_breaker": {"failures": 0}},
            "models.default.circuit_breaker.failures: input should be greater than or equal to 1",
            id="breaker-without-failures",
        ),
        pytest.param(
            {"models": {"my model": {"provider": "echo"}}, "agents__0__model": "my model"},
            "models['my model']: model name must start with a letter",
            id="bad-model-name",
        ),
        pytest.param({"agents": []}, "agents: list should have at least 1 item", id="no-agents"),
        pytest.param({"agents": DELETE}, "agents: required", id="missing-agents"),
        pytest.param(
            {"triggers__0__agent": "nobody"},
            "triggers[0] (daily).agent: agent 'nobody' is not in agents",
            id="trigger-unknown-agent",
        ),
        pytest.param(
            {"triggers": BASE["triggers"] * 2},
            "triggers[1] (daily).name: trigger name 'daily' is already used by triggers[0]",
            id="duplicate-trigger",
        ),
        pytest.param(
            {"approvals__tools__time.today": "always"},
            "approvals.tools['time.today']: no agent uses this tool",
            id="approval-for-unused-tool",
        ),
        pytest.param(
            {"agents": [{"name": "lead", "role": "planner"}]},
            "agents[0] (lead).role: a planner needs another agent to run its plans' steps",
            id="planner-alone",
        ),
        pytest.param(
            {"approvals__plans": {"min_steps": 0}},
            "approvals.plans.min_steps: input should be greater than or equal to 1",
            id="plans-min-steps",
        ),
        pytest.param(
            {"memory": {"store": "redis://localhost"}},
            "memory.store: must start with sqlite:///, postgresql:// or postgres://",
            id="bad-store",
        ),
    ],
)
def test_rule_violation_names_the_field(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, changed(**changes))
    error = load_error(path)
    assert any(line.startswith(f"{path}: {expected}") for line in str(error).splitlines()), error


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    data = changed(agents__0__routes=["x", "triage"], agents__1__model="gpt")
    error = load_error(write(tmp_path, data))
    assert [problem.path for problem in error.problems] == [
        "agents[0] (triage).routes[0]",
        "agents[0] (triage).routes[1]",
        "agents[1] (billing).model",
    ]
    assert len(str(error).splitlines()) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "models:\n  default: {provider: echo}\nagents:\n  - name: a\n   bad: x\n",
            "invalid YAML at line 5, column 4: expected <block end>",
            id="yaml-syntax",
        ),
        pytest.param(
            "models: {}\nmodels: {}\n",
            "invalid YAML at line 2, column 1: found duplicate key 'models'",
            id="duplicate-key",
        ),
        pytest.param(
            "x: !!python/object/apply:os.system [echo]\n",
            "invalid YAML at line 1, column 4: could not determine a constructor",
            id="unsafe-tag",
        ),
        pytest.param("- a\n- b\n", "the top level must be a mapping", id="list-top-level"),
        pytest.param("just text\n", "the top level must be a mapping", id="string-top-level"),
        pytest.param("", "the formation is empty", id="empty"),
        pytest.param(
            "models: &loop {x: *loop}\nagents: []\n",
            "models.x.x.x",
            id="self-containing-alias",
        ),
        pytest.param(
            "models: {default: {provider: echo}}\nagents: [{name: a, description: '${X'}]\n",
            "agents[0] (a).description: '${' is not closed",
            id="unclosed-reference",
        ),
    ],
)
def test_unusable_file_content(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert str(load_error(path)).startswith(f"{path}: {expected}")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "file not found", id="missing"),
        pytest.param("a directory", "is a directory, not a file", id="directory"),
        pytest.param(b"id: \xe9\n", "not UTF-8 text", id="not-utf8"),
    ],
)
def test_unreadable_file(tmp_path: Path, content: bytes | str | None, expected: str) -> None:
    path = tmp_path / "formation.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.mkdir()
    assert str(load_error(path)) == f"{path}: cannot read the formation: {expected}"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    path.chmod(0)
    assert str(load_error(path)).endswith("cannot read the formation: permission denied")


def test_parse_formation_without_source_has_no_prefix() -> None:
    with pytest.raises(FormationError) as info:
        parse_formation("- 1\n")
    assert str(info.value).startswith("the top level must be a mapping")


def test_unresolved_tools() -> None:
    formation = Formation.model_validate(BASE)
    assert formation.unresolved_tools({"lookup_invoice"}) == []
    assert formation.unresolved_tools({"lookup_invoice"}, {"time": ["now"]}) == []
    assert formation.unresolved_tools(set(), {"time": ["today"]}) == [
        FormationProblem("agents[1] (billing).tools[0]", "MCP server 'time' has no such tool"),
        FormationProblem(
            "agents[1] (billing).tools[1]",
            "no Python tool is called 'lookup_invoice'; list its module under python_tools,"
            " or write an MCP tool as `server.tool`",
        ),
    ]


def test_rules_apply_to_formations_built_in_code() -> None:
    with pytest.raises(ValidationError, match=r"agents\[0\] \(triage\)\.routes\[0\]"):
        Formation.model_validate(changed(agents__0__routes=["x"]))


def test_a_planner_may_use_every_other_agent_or_its_routes(tmp_path: Path) -> None:
    data = changed(
        agents=[
            {"name": "lead", "role": "planner"},
            {"name": "narrow", "role": "planner", "routes": ["billing"]},
            {"name": "billing"},
            {"name": "support"},
        ],
        approvals={"plans": {"min_steps": 2}},
        triggers=[],
    )
    formation = load_formation(write(tmp_path, data), env={})
    assert formation.approvals.plans == PlanApprovalConfig(min_steps=2)
    lead = new_session_input(
        formation, formation.agent("lead"), tenant="t", user_id="u", activities_task_queue="q"
    )
    assert (lead.agent.role, lead.agent.routes) == ("planner", ["narrow", "billing", "support"])
    narrow = new_session_input(
        formation, formation.agent("narrow"), tenant="t", user_id="u", activities_task_queue="q"
    )
    assert (narrow.agent.routes, sorted(narrow.team)) == (["billing"], ["billing"])
