"""The formation file's schema: models, agents, tools, approvals, memory, triggers."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Annotated, Literal, Self

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keel.formation._errors import (
    INTERPOLATED_CONTEXT_KEY,
    NAME_RULE,
    UNION_TAG,
    FormationProblem,
    Loc,
    format_path,
    problems_error,
)
from keel.formation._model_config import ModelConfig
from keel.formation._model_config import StrictModel as _Strict
from keel.formation._tool_refs import may_be_used, unresolved_references
from keel.tool_patterns import is_pattern
from keel.triggers import check_template

_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
"""Names of agents, models, servers and triggers: they appear in URLs and tool names."""


class AgentConfig(_Strict):
    """An agent: a prompt, a model and the tools it may use."""

    name: Name
    role: Literal["coordinator", "specialist", "planner"] = "specialist"
    """A `planner` answers by a plan whose steps other agents run (docs/agents.md)."""
    description: str = ""
    system_prompt: str | None = None
    model: str = "default"
    tools: list[str] = Field(default_factory=list)
    """`<mcp server>.<tool>` or the name of a Python tool."""
    routes: list[str] = Field(default_factory=list)
    """Agents a coordinator may delegate to; for a planner, the agents its plans may use
    (by default every other agent)."""
    max_steps: int = Field(default=8, ge=1, le=100)


class McpServerConfig(_Strict):
    """An MCP server the workers connect to."""

    name: Name
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60, gt=0, le=3600)
    """Time limit of one tool call's answer; the model is told when it runs out."""

    @model_validator(mode="after")
    def _check_transport(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if self.transport == "stdio":
            if not self.command:
                problems.append((("command",), "required for transport 'stdio'"))
            for key in ("url", "headers"):
                if getattr(self, key):
                    problems.append(((key,), "only for transport 'http'; stdio runs `command`"))
        else:
            if not self.url:
                problems.append((("url",), "required for transport 'http'"))
            elif not self.url.startswith(("http://", "https://")):
                problems.append((("url",), "must start with http:// or https://"))
            for key in ("command", "args", "env"):
                if getattr(self, key):
                    problems.append(((key,), "only for transport 'stdio'; http uses `url`"))
        if problems:
            raise problems_error(problems)
        return self


Policy = Literal["never", "always"]


class PlanApprovalConfig(_Strict):
    """Gate only plans of at least `min_steps` steps."""

    min_steps: int = Field(ge=1, le=100)


def _plan_policy_kind(value: object) -> str:
    return (
        f"{UNION_TAG}gate"
        if isinstance(value, Mapping | PlanApprovalConfig)
        else f"{UNION_TAG}policy"
    )


PlanPolicy = Annotated[
    Annotated[Policy, Tag(f"{UNION_TAG}policy")]
    | Annotated[PlanApprovalConfig, Tag(f"{UNION_TAG}gate")],
    Discriminator(_plan_policy_kind),
]
"""`never`, `always`, or `{min_steps: N}`: one error for a bad value, not one per form."""


class ApprovalsConfig(_Strict):
    """Which tool calls wait for a human, and for how long."""

    default: Policy = "never"
    tools: dict[str, Policy] = Field(default_factory=dict)
    timeout_s: float = Field(default=3600, gt=0)
    on_timeout: Literal["reject", "approve"] = "reject"
    plans: PlanPolicy = "never"
    """Whether a planner's plan waits for a decision: never, always, or `{min_steps: N}`.
    A plan that times out under `on_timeout: reject` is not run (its turn fails)."""


class EmbedderConfig(_Strict):
    """The model that turns memories into vectors.

    `static` (the default) needs nothing but the base install; `minilm` needs
    the `keel[minilm]` extra (torch); `openai` calls the embeddings API.
    """

    provider: Literal["static", "minilm", "openai"] = "static"
    model: str = "text-embedding-3-small"
    """For `openai`: the embedding model."""
    dimensions: int = Field(default=1536, ge=1, le=8192)
    """For `openai`: the vector size the model returns."""
    base_url: str | None = None
    api_key_env: str | None = None
    """For `openai`: the variable holding the key (default OPENAI_API_KEY)."""


class VectorMemoryConfig(_Strict):
    """Long-term memory in Qdrant: a local path (embedded) or a server URL."""

    enabled: bool = False
    path: str = "qdrant"
    url: str | None = None
    api_key_env: str | None = None
    """For a Qdrant server that wants a key: the variable holding it."""
    top_k: int = Field(default=5, ge=1, le=100)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    remember_tool: bool = True
    """Offer agents the built-in `remember` tool, which stores a fact about the user."""
    extract_facts: bool = False
    """After each turn, ask the model for lasting facts about the user and store them."""


class ReferencesConfig(_Strict):
    """Large tool results are kept out of workflow history, as references."""

    threshold_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """Results larger than this go to the store; history keeps `{ref, glimpse}`."""
    inline_max_chars: int = Field(default=64 * 1024, ge=1024)
    """The model sees a referenced result whole up to this size; larger ones are cut,
    and the model gets the `read_reference` tool to read on."""


class MemoryConfig(_Strict):
    """Where transcripts live and how much of them the model sees."""

    buffer_messages: int = Field(default=50, ge=1, le=10_000)
    summaries: bool = True
    """Summarise messages older than the buffer, so the model keeps their gist."""
    store: str = "sqlite:///keel.db"
    """`sqlite:///PATH` (relative paths resolve inside the data dir) or `postgresql://…`."""
    vector: VectorMemoryConfig = Field(default_factory=VectorMemoryConfig)
    references: ReferencesConfig = Field(default_factory=ReferencesConfig)

    @field_validator("store")
    @classmethod
    def _check_store(cls, store: str) -> str:
        # Never quote the value: a Postgres URL may carry a password.
        if not store.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:///, postgresql:// or postgres://")
        if store == "sqlite:///":
            raise ValueError("sqlite:/// needs a file path after it")
        return store


class TriggerConfig(_Strict):
    """A named way for the outside world to start a turn."""

    name: Name
    agent: str
    template: str
    schedule: str | None = None
    """A cron expression; the trigger then also runs as a Temporal Schedule."""
    secret_env: str | None = None
    """Env var holding an HMAC-SHA256 key that webhook calls must sign with."""

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: str) -> str:
        problem = check_template(value)
        if problem is not None:
            raise ValueError(f"the template does not compile: {problem}")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("@") or len(value.split()) in (5, 6, 7)):
            raise ValueError("must be a cron expression (5 fields, e.g. '0 9 * * *') or @daily")
        return value


class SessionsConfig(_Strict):
    """How a session treats its messages."""

    on_busy: Literal["enqueue", "reject", "interrupt", "rollback"] = "enqueue"
    """What a message sent while a turn runs does: wait its turn, be refused, or cancel
    the running turn (and any queued ones) and run; `rollback` also drops the cancelled
    turn's messages from the transcript."""
    max_message_chars: int = Field(default=32_000, ge=1, le=1_000_000)
    max_queued_turns: int = Field(default=100, ge=1, le=1000)
    """Messages that may wait for their turn; more are refused (429 `session-queue-full`)."""
    continue_as_new_after_turns: int = Field(default=500, ge=1)
    """Start a fresh run (same session) after this many turns, keeping history small."""
    max_delegation_depth: int = Field(default=2, ge=0, le=10)
    """How deep delegations may nest (a coordinator's specialist delegating on, …)."""
    upgrade_on_continue_as_new: bool = False
    """With versioned workers: a session's next run starts on the deployment's current
    build, instead of staying on the build the session started on (docs/deploy.md)."""


class PrivacyConfig(_Strict):
    """What step events may show of tool calls; history and the transcript keep it all."""

    redact_tool_arguments: bool = False
    """`tool.call` and approval events carry `"[redacted]"` instead of the arguments."""
    redact_tool_results: bool = False
    """`tool.result` events carry `"[redacted]"` instead of the tool's output."""


class Formation(_Strict):
    """The user's declaration of agents, models, tools and policies."""

    id: Name = "default"
    models: dict[str, ModelConfig]
    agents: list[AgentConfig] = Field(min_length=1)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    python_tools: list[str] = Field(default_factory=list)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    triggers: list[TriggerConfig] = Field(default_factory=list)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    _interpolated: frozenset[Loc] = PrivateAttr(default_factory=frozenset)
    """Locs whose strings came from `${VAR}`: messages must not quote them."""

    @model_validator(mode="after")
    def _check_references(self, info: ValidationInfo) -> Self:
        context = info.context if isinstance(info.context, Mapping) else {}
        self._interpolated = frozenset(context.get(INTERPOLATED_CONTEXT_KEY, ()))
        problems = _reference_problems(self)
        if problems:
            raise problems_error(problems, self, self._interpolated)
        return self

    def agent(self, name: str) -> AgentConfig:
        """The agent called `name`; `KeyError` if there is none."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    @property
    def default_agent(self) -> AgentConfig:
        """The coordinator if there is one, else the first agent."""
        return next((a for a in self.agents if a.role == "coordinator"), self.agents[0])

    def model_for(self, agent: AgentConfig) -> ModelConfig:
        """The model an agent uses."""
        return self.models[agent.model]

    def unresolved_tools(
        self,
        known_python_tools: Collection[str],
        known_mcp_tools: Mapping[str, Collection[str]] | None = None,
    ) -> list[FormationProblem]:
        """Tool references that name no known tool, for the worker to check after start-up.

        Loading a formation checks only that `server.tool` names a declared MCP server;
        bare names are Python tools, known once the `python_tools` modules are imported.

        Args:
            known_python_tools: Names of the Python tools the worker registered.
            known_mcp_tools: Tool names per MCP server, if listed; servers absent from
                it (or `None`) are not checked.

        Returns:
            One problem per unresolved reference; empty when all resolve.
        """
        hidden = self._interpolated
        return [
            FormationProblem(format_path(loc, self, hidden), message)
            for loc, message in unresolved_references(
                self.agents,
                known_python_tools,
                known_mcp_tools or {},
                show=lambda value, loc: _show(value, loc, hidden),
            )
        ]


def _show(value: str, loc: Loc, hidden: Collection[Loc]) -> str:
    """A value quoted for a message, unless it came from the environment."""
    return "<from the environment>" if loc in hidden else f"'{value}'"


def _reference_problems(f: Formation) -> list[tuple[Loc, str]]:
    """Cross-reference rules: unique names, known routes, models, servers and agents."""
    hidden = f._interpolated
    out: list[tuple[Loc, str]] = []
    loc: Loc

    def add(loc: Loc, message: str) -> None:
        out.append((loc, message))

    if not f.models:
        add(("models",), "define at least one model")
    for key, model in f.models.items():
        if not re.match(_NAME_PATTERN, key):
            add(("models", key), f"model name {NAME_RULE}")
        for j, fallback in enumerate(model.fallbacks):
            loc = ("models", key, "fallbacks", j)
            if fallback == key:
                add(loc, "a model cannot fall back to itself")
            elif fallback not in f.models:
                add(loc, f"model {_show(fallback, loc, hidden)} is not in models")
            elif fallback in model.fallbacks[:j]:
                add(loc, f"model {_show(fallback, loc, hidden)} is listed twice")
    names = {agent.name for agent in f.agents}
    servers = {server.name for server in f.mcp_servers}
    first: dict[str, int] = {}
    coordinator = next((i for i, a in enumerate(f.agents) if a.role == "coordinator"), None)
    for i, agent in enumerate(f.agents):
        if agent.name in first:
            loc = ("agents", i, "name")
            shown = _show(agent.name, loc, hidden)
            add(loc, f"agent name {shown} is already used by agents[{first[agent.name]}]")
        first.setdefault(agent.name, i)
        if agent.role == "coordinator" and i != coordinator:
            earlier = format_path(("agents", coordinator or 0), f, hidden)
            add(("agents", i, "role"), f"only one agent may be the coordinator; {earlier} is")
        if agent.model not in f.models:
            loc = ("agents", i, "model")
            defined = ", ".join(f.models) or "none"
            add(loc, f"model {_show(agent.model, loc, hidden)} is not in models ({defined})")
        if agent.role == "planner" and not (agent.routes or len(names) > 1):
            add(("agents", i, "role"), "a planner needs another agent to run its plans' steps")
        for j, route in enumerate(agent.routes):
            loc = ("agents", i, "routes", j)
            if route == agent.name:
                add(loc, "an agent cannot route to itself")
            elif route not in names:
                add(loc, f"route {_show(route, loc, hidden)} names no agent")
            elif route in agent.routes[:j]:
                add(loc, f"route {_show(route, loc, hidden)} is listed twice")
        for j, tool in enumerate(agent.tools):
            loc = ("agents", i, "tools", j)
            shown = _show(tool, loc, hidden)
            server, dot, name = tool.partition(".")
            if tool in agent.tools[:j]:
                add(loc, f"tool {shown} is listed twice")
            elif not tool or (dot and (not server or not name)):
                add(loc, f"tool {shown} must be `server.tool` or a Python tool name")
            elif dot and is_pattern(server):
                add(loc, f"tool {shown}: only the tool part may be a pattern (`server.read_*`)")
            elif dot and server not in servers:
                server_shown = _show(server, loc, hidden)
                add(loc, f"tool {shown} names MCP server {server_shown}, not in mcp_servers")
    out += _duplicates("mcp_servers", [s.name for s in f.mcp_servers], "MCP server", hidden)
    out += _duplicates("triggers", [t.name for t in f.triggers], "trigger", hidden)
    for i, trigger in enumerate(f.triggers):
        if trigger.agent not in names:
            loc = ("triggers", i, "agent")
            add(loc, f"agent {_show(trigger.agent, loc, hidden)} is not in agents")
    used = {tool for agent in f.agents for tool in agent.tools}
    for tool in f.approvals.tools:
        if not may_be_used(tool, used):
            add(("approvals", "tools", tool), "no agent uses this tool")
    return out


def _duplicates(
    section: str, names: list[str], what: str, hidden: Collection[Loc]
) -> list[tuple[Loc, str]]:
    """Problems for names in a list section that repeat an earlier one."""
    first: dict[str, int] = {}
    out: list[tuple[Loc, str]] = []
    for i, name in enumerate(names):
        loc: Loc = (section, i, "name")
        if name in first:
            shown = _show(name, loc, hidden)
            out.append((loc, f"{what} name {shown} is already used by {section}[{first[name]}]"))
        else:
            first[name] = i
    return out
