"""Workflow code imports only models: no activity, vendor SDK, store or network client."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("activities", "openai", "anthropic", "mcp", "asyncpg", "qdrant_client", "redis", "httpx")


def test_importing_the_workflows_loads_no_activity_sdk_or_store() -> None:
    probe = f"import sys, workflows; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == ""
