"""Process settings: one `BaseSettings`, read from `KEEL_*` env vars, overridden by CLI flags."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SESSIONS_TASK_QUEUE = "keel-sessions"
ACTIVITIES_TASK_QUEUE = "keel-activities"
TENANT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Settings(BaseSettings):
    """Where Temporal is, where data lives, who may call the API.

    Workflows never read these: what a workflow needs travels in its input, so
    replay does not depend on the environment of the worker that replays it.
    """

    model_config = SettingsConfigDict(env_prefix="KEEL_", extra="ignore")

    temporal_address: str = "localhost:7233"
    namespace: str = "default"
    temporal_ui_url: str = "http://localhost:8233"
    """Base URL of the Temporal UI, for the links in session responses."""
    data_dir: Path = Path(".keel")
    formation: Path | None = None
    # Secrets stay out of repr(), so a traceback that shows the settings shows no key.
    admin_keys: str = Field(default="", repr=False)
    """Comma-separated admin keys, each `KEY` or `KEY@TENANT` (see docs/security.md)."""
    client_keys: str = Field(default="", repr=False)
    """Comma-separated client keys, each `KEY` or `KEY@TENANT`."""
    keys_file: Path | None = None
    """YAML or JSON list of `{name, role, tenant?, sha256}`: keys kept as digests only."""
    page_token_secret: str = Field(default="", repr=False)
    """Signs list page tokens; give every API process behind one balancer the same value.

    Unset, each process signs with a random key of its own.
    """
    redis_url: str | None = None
    """Redis for token deltas between processes; without it only `keel dev` streams tokens."""
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    """How often an idle event stream gets a heartbeat comment."""
    events_refresh_s: float = Field(default=5.0, gt=0)
    """How often `GET /v1/events` looks for the caller's new sessions."""
    events_poll_cooldown_s: float = Field(default=0.025, ge=0.005)
    """Pause between two polls of a session's step events while they flow. Each
    poll costs history events (a few per batch of step events, never per token);
    lower means step events, and the first token deltas that wait for them, arrive sooner."""
    sessions_task_queue: str | None = Field(default=None, min_length=1)
    """The queue of sessions; by default the formation's (`keel.temporal.task_queues`)."""
    activities_task_queue: str | None = Field(default=None, min_length=1)
    """The queue of memory, messaging and checks; by default the formation's."""
    serve_legacy_queues: bool = False
    """The formation ran before queue names carried its id: its workers also poll
    `keel-sessions` and `keel-activities`, and its API reaches the sessions there that
    carry no formation, until they have ended (docs/deploy.md, "Several formations")."""
    max_cached_sessions: int = Field(default=200, ge=1)
    """Sessions a worker keeps in memory between their turns; an evicted one replays
    its current run's history on its next message (docs/performance.md)."""
    worker_deployment: str | None = Field(default=None, min_length=1, max_length=255)
    """The Temporal Worker Deployment a worker belongs to (`keel worker --deployment`).
    With `worker_build_id`, each session runs on the build it started on (docs/deploy.md)."""
    worker_build_id: str | None = Field(default=None, min_length=1, max_length=255)
    """The worker's build within `worker_deployment` (`keel worker --build-id`)."""
    tenant: str = Field(default="default", pattern=TENANT_PATTERN)
    """Tenant of callers whose key names none, and of every caller when no keys are set."""
    # -- limits: 0 disables one; all but the two size limits apply to keyed callers only
    max_body_bytes: int = Field(default=1_048_576, ge=0)
    """Largest request body, counted as it streams in (413)."""
    max_message_chars: int = Field(default=32_000, ge=0)
    """Longest chat message the API accepts, before the formation's own limit (422)."""
    max_sessions_per_user: int = Field(default=100, ge=0)
    """Active sessions one user may hold in a tenant (409)."""
    max_concurrent_turns_per_user: int = Field(default=8, ge=0)
    """Chat requests one user may have waiting for an answer at once, per API process (429)."""
    max_sse_per_key: int = Field(default=16, ge=0)
    """Open event streams per API key, per API process (429)."""
    rate_limit_per_minute: int = Field(default=600, ge=0)
    """Requests per minute per API key, per API process (429 with Retry-After)."""
    rate_limit_burst: int = Field(default=60, ge=1)
    """Requests a key may send at once before the per-minute rate applies."""
    idempotency_ttl_s: float = Field(default=86_400, gt=0)
    """How long an `Idempotency-Key` is remembered: its ids, and its answer once final.

    The API promises at least 24 hours; a shorter time is for tests."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Where a worker serves Prometheus metrics (`/metrics`): Keel's token and cost counters
    beside the Temporal SDK's own worker metrics. None: a worker exports none."""
    metrics_host: str = "0.0.0.0"
    """The address `metrics_port` listens on."""
    log_level: str = "info"
    log_format: str = "auto"
    """`json`, `console`, or `auto` (console on a TTY, JSON otherwise)."""

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"auto", "json", "console"}:
            raise ValueError("must be auto, json or console")
        return value

    @model_validator(mode="after")
    def _deployment_with_build(self) -> Settings:
        if (self.worker_deployment is None) != (self.worker_build_id is None):
            raise ValueError(
                "a versioned worker needs both its deployment and its build id"
                " (--deployment and --build-id, or KEEL_WORKER_DEPLOYMENT and KEEL_WORKER_BUILD_ID)"
            )
        return self

    @cached_property
    def resolved_data_dir(self) -> Path:
        """The data dir as an absolute path, created if missing."""
        path = self.data_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data_path(self, value: str) -> Path:
        """A path from the formation: relative ones resolve inside the data dir."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.resolved_data_dir / path
