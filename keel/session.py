"""Inputs, results and state of `SessionWorkflow`, shared by the workflow, the API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.contrib.workflow_streams import WorkflowStreamState

from keel.approvals import Approval
from keel.events import SessionEvent
from keel.formation import (
    AgentConfig,
    ApprovalsConfig,
    Formation,
    ModelConfig,
    PrivacyConfig,
    SessionsConfig,
)
from keel.messages import Message, Usage
from keel.names import SESSION_WORKFLOW as SESSION_WORKFLOW
from keel.plans import Plan

TurnStatus = Literal["queued", "running", "awaiting_approval", "completed", "failed", "cancelled"]
FINAL_TURN_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


def session_workflow_id(tenant: str, session_id: str) -> str:
    """The workflow id of a session: the tenant is part of it, so tenants never collide."""
    return f"keel/{tenant}/{session_id}"


def session_id_of(workflow_id: str) -> str:
    """The session id inside a session's workflow id."""
    return workflow_id.rsplit("/", 1)[-1]


class AgentSnapshot(BaseModel):
    """The agent as it was when the session started.

    Carried in the workflow input rather than looked up from the worker's
    formation, so replaying a session never depends on a file that has
    changed since. It holds env var names, never secrets.
    """

    name: str
    role: str = "specialist"
    """`planner` answers by a plan (`workflows/_planner.py`); the others by the agent loop."""
    description: str = ""
    system_prompt: str | None = None
    model_name: str
    model: ModelConfig
    fallbacks: dict[str, ModelConfig] = Field(default_factory=dict)
    """The model's `fallbacks` by name, in the order they are tried."""
    tools: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    """Agents this one may delegate to: each is offered to the model as a tool."""
    max_steps: int = 8
    buffer_messages: int = 50


def planner_agents(formation: Formation, agent: AgentConfig) -> list[str]:
    """The agents a planner's steps may use: its routes, else every other agent."""
    return list(agent.routes) or [a.name for a in formation.agents if a.name != agent.name]


def _snapshot(formation: Formation, agent: AgentConfig) -> AgentSnapshot:
    return AgentSnapshot(
        name=agent.name,
        role=agent.role,
        description=agent.description,
        system_prompt=agent.system_prompt,
        model_name=agent.model,
        model=formation.model_for(agent),
        fallbacks={name: formation.models[name] for name in formation.model_for(agent).fallbacks},
        tools=agent.tools,
        routes=planner_agents(formation, agent) if agent.role == "planner" else agent.routes,
        max_steps=agent.max_steps,
        buffer_messages=formation.memory.buffer_messages,
    )


class MemoryOptions(BaseModel):
    """The formation's memory settings a session needs; workflows cannot read the formation."""

    formation: str = "default"
    """Long-term memories are scoped per formation as well as per tenant and user."""
    summaries: bool = True
    vector: bool = False
    """Recall memories before a turn's first model call, and store the turn after it."""
    top_k: int = 5
    remember_tool: bool = False
    extract_facts: bool = False


def memory_options(formation: Formation) -> MemoryOptions:
    """The memory settings of a formation, as sessions carry them."""
    memory = formation.memory
    vector = memory.vector
    return MemoryOptions(
        formation=formation.id,
        summaries=memory.summaries,
        vector=vector.enabled,
        top_k=vector.top_k,
        remember_tool=vector.enabled and vector.remember_tool,
        extract_facts=vector.enabled and vector.extract_facts,
    )


class QueuedTurn(BaseModel):
    """A user message waiting for its turn."""

    turn_id: str
    text: str
    received_at: datetime
    response_schema: dict[str, Any] | None = None
    ask_chain: list[str] = Field(default_factory=list)
    """Sessions waiting on this turn through `ask_session` (see `SendMessageInput`)."""


class CarriedState(BaseModel):
    """What one run hands to the next at continue-as-new.

    A fork's first run starts from one too: `next_seq` after the prefix it copied
    (and `summary_upto` of the summary it copied), so the store holds what its
    first model call expects.
    """

    next_seq: int = 0
    turn_count: int = 0
    usage: Usage = Field(default_factory=Usage)
    queued: list[QueuedTurn] = Field(default_factory=list)
    unsynced: list[Message] = Field(default_factory=list)
    """Messages the transcript store may not have yet (e.g. of a failed turn)."""
    stream: WorkflowStreamState | None = None
    summary_upto: int = 0
    """Messages before this seq are summarised in the transcript store."""
    recent_turns: list[TurnResult] = Field(default_factory=list)
    """The last turns that ended, so a `wait_turn` that reaches the new run still finds them."""
    turn_ids: list[str] = Field(default_factory=list)
    """Ids of earlier turns, newest last: a retried message must not run a turn twice."""
    plans: list[Plan] = Field(default_factory=list)
    """A planner's recent plans, so their listing and late decisions outlive the run."""


class StartSessionInput(BaseModel):
    """Input of `SessionWorkflow`."""

    session_id: str = ""
    """Empty for runs started by a Temporal Schedule: then the workflow id's last part."""
    tenant: str
    user_id: str
    agent: AgentSnapshot
    options: SessionsConfig = Field(default_factory=SessionsConfig)
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    """What the session's step events may show; the workflow cannot read the formation."""
    activities_task_queue: str
    team: dict[str, AgentSnapshot] = Field(default_factory=dict)
    """Every agent reachable by delegation from this session's agent."""
    depth: int = 0
    """How many delegations deep this session runs (0 for a session users start)."""
    initial_message: str | None = None
    """A first message to run at once (triggers and schedules start sessions this way)."""
    close_when_idle: bool = False
    """Close once no turn is queued: a one-shot run rather than a conversation."""
    sees_all_users: bool = False
    """Started by a caller bound to no user (an admin key): `ask_session` may reach any
    session of the tenant, not only this user's."""
    carried: CarriedState | None = None


def new_session_input(
    formation: Formation,
    agent: AgentConfig,
    *,
    tenant: str,
    user_id: str,
    activities_task_queue: str,
    session_id: str = "",
    initial_message: str | None = None,
    close_when_idle: bool = False,
    sees_all_users: bool = False,
) -> StartSessionInput:
    """The input of a new session of `agent`: a snapshot of what the formation says now."""
    team: dict[str, AgentSnapshot] = {}
    reachable = list(_snapshot(formation, agent).routes)
    while reachable:
        name = reachable.pop()
        if name not in team:
            team[name] = _snapshot(formation, formation.agent(name))
            reachable += team[name].routes
    return StartSessionInput(
        session_id=session_id,
        tenant=tenant,
        user_id=user_id,
        agent=_snapshot(formation, agent),
        team=team,
        options=formation.sessions,
        approvals=formation.approvals,
        privacy=formation.privacy,
        memory=memory_options(formation),
        activities_task_queue=activities_task_queue,
        initial_message=initial_message,
        close_when_idle=close_when_idle,
        sees_all_users=sees_all_users,
    )


class SendMessageInput(BaseModel):
    """Input of the `send_message` and `chat` updates."""

    text: str
    response_schema: dict[str, Any] | None = None
    """JSON Schema the final answer must satisfy (structured output)."""
    turn_id: str | None = None
    """Chosen by the caller, so it knows the turn even if it stops waiting for the answer."""
    user_id: str | None = None
    """The user the caller acts for, when it is bound to one: the session must be theirs."""
    ask_chain: list[str] = Field(default_factory=list)
    """With `ask_session`: the asking session and the sessions waiting on it, so the
    turn never asks one of them back (each would wait for the other)."""


class CancelTurnInput(BaseModel):
    """Input of the `cancel_turn` update."""

    turn_id: str
    rollback: bool | None = None
    """Drop the turn's messages from the transcript too; None: as `sessions.on_busy`
    says (`rollback` rolls back, the others keep them)."""
    user_id: str | None = None
    """The user the caller acts for, when it is bound to one: the session must be theirs."""


class CancelTurnResult(BaseModel):
    """The turn as the cancel found it: `cancelled` if it was queued, else still running
    (it ends `cancelled`, with `turn.cancelled`, once its model or tool call has stopped)."""

    turn_id: str
    status: TurnStatus


class StreamedEvent(BaseModel):
    """A step event and its offset in the session's stream."""

    offset: int
    event: SessionEvent


class SendMessageResult(BaseModel):
    """The turn a message started, and the stream offset its events start at."""

    turn_id: str
    stream_offset: int
    started: StreamedEvent | None = None
    """The turn's `turn.started`, when the message found the session idle: a stream
    of the turn sends it at once, not after a poll of the session's events."""


class WaitTurnInput(BaseModel):
    """Input of the `wait_turn` update."""

    turn_id: str


class AssistantReply(BaseModel):
    """The final answer of a turn."""

    role: Literal["assistant"] = "assistant"
    content: str


class TurnResult(BaseModel):
    """Status and outcome of one turn."""

    turn_id: str
    status: TurnStatus
    message: AssistantReply | None = None
    data: Any = None
    """With a response schema: the answer, parsed and validated."""
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None
    error_id: str | None = None
    """Names a failure of the workflow's own code in the worker's log."""
    model: str | None = None
    """The model (its name in the formation) that gave the final answer: a fallback's
    when the agent's own model failed."""


class SessionResult(BaseModel):
    """What a closed session returns."""

    turn_count: int
    usage: Usage
    last_turn: TurnResult | None = None
    """The final turn: a one-shot run's answer (schedules, delegated specialists)."""


class CloseSessionInput(BaseModel):
    """Input of the `close` update."""

    reason: str | None = None


class CloseSessionResult(BaseModel):
    """Result of the `close` update."""

    status: Literal["closed"] = "closed"


class SessionState(BaseModel):
    """Result of the `state` query."""

    status: Literal["active", "closing"]
    agent: str
    current_turn: str | None
    queued_turns: list[str]
    turns: list[TurnResult]
    """Turns of the current run, newest last."""
    pending_approvals: list[Approval] = Field(default_factory=list)
    usage: Usage
    turn_count: int
    stream_offset: int
    plans: list[Plan] = Field(default_factory=list)
    """A planner's recent plans, oldest first."""


class TurnSummary(BaseModel):
    """A turn that ended, as the session's memo records it."""

    turn_id: str
    status: TurnStatus
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class SessionSummary(BaseModel):
    """What a session mirrors into its workflow memo, under `SUMMARY_MEMO`.

    Temporal answers a describe without a worker, so reads of a session never
    wait for one. The memo holds what the transcript store cannot tell: it is
    upserted when approvals change, when a turn ends other than completed or
    with other turns waiting, and after a run's first turn. A completed turn's
    answer and tokens are in the store (each assistant message's `usage`).
    """

    pending_approvals: list[Approval] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    """The session's tokens at the upsert; with `usage_from_seq`, only those of the model
    calls whose answers come before that seq."""
    usage_from_seq: int | None = None
    """Where the store's count of tokens takes over (`TranscriptStore.usage`); None: `usage`
    is the session's whole count (a session that upserts after every turn)."""
    turn_count: int = 0
    """Turns ended at the upsert."""
    turns: list[TurnSummary] = Field(default_factory=list)
    """The last turns that ended before the upsert, newest last."""
    queued_turns: list[str] = Field(default_factory=list)
    """Turns waiting at the upsert (the first of them)."""
    approvals_elided: bool = False
    """Some pending approvals are left out (too many to mirror): ask the session."""
    plans: list[Plan] = Field(default_factory=list)
    """A planner's recent plans, oldest first; long step answers cut (`plans_elided`)."""
    plans_elided: bool = False
    """Some plans or parts of their answers are left out: ask the session."""

    @property
    def approvals_complete(self) -> bool:
        """Whether every pending approval is here, arguments and all."""
        return not self.approvals_elided and not any(
            a.arguments_elided for a in self.pending_approvals
        )

    def turn(self, turn_id: str) -> TurnSummary | None:
        """The summary of an ended turn, if the memo still lists it."""
        return next((t for t in self.turns if t.turn_id == turn_id), None)


SUMMARY_MEMO = "summary"
"""The memo key of a session's `SessionSummary`."""
