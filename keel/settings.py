"""Process settings: one `BaseSettings`, read from `KEEL_*` env vars, overridden by CLI flags."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SESSIONS_TASK_QUEUE = "keel-sessions"
ACTIVITIES_TASK_QUEUE = "keel-activities"


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
    admin_keys: str = ""
    client_keys: str = ""
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
    sessions_task_queue: str = SESSIONS_TASK_QUEUE
    activities_task_queue: str = ACTIVITIES_TASK_QUEUE
    tenant: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Tenant of callers that are not bound to one (all callers, until keys carry tenants)."""
    log_level: str = "info"
    log_format: str = "auto"
    """`json`, `console`, or `auto` (console on a TTY, JSON otherwise)."""

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"auto", "json", "console"}:
            raise ValueError("must be auto, json or console")
        return value

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
