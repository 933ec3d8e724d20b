"""The workflow sandbox sessions run in: the SDK's, with the session's helper modules shared.

A new sandbox (a new session, a session evicted from the cache, every continue-as-new)
executes each module it does not pass through again. Executing the helper modules of
`workflows/` was about a third of an evicted session's extra cost (docs/performance.md),
though they hold nothing at module level but constants, read and never changed. So they are
imported once per process, and only `workflows.session`, with the workflow class, is
executed per sandbox. What the strict sandbox would catch in a helper (the clock, the
environment, I/O) it still catches in the replay tests, which replay every history of the
corpus under the SDK's default sandbox (tests/workflows/test_replay.py).
"""

from __future__ import annotations

import pkgutil

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows

WORKFLOW_MODULE = "workflows.session"
"""The module of the workflow class: executed in every sandbox, under every restriction."""


def shared_helper_modules() -> list[str]:
    """The modules of `workflows/` but the workflow class's, to be imported once per process."""
    return [
        f"{workflows.__name__}.{module.name}"
        for module in pkgutil.iter_modules(workflows.__path__)
        if f"{workflows.__name__}.{module.name}" != WORKFLOW_MODULE
    ]


def session_sandbox() -> SandboxedWorkflowRunner:
    """The runner for `SessionWorkflow`: the default restrictions, the helpers passed through."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*shared_helper_modules())
    return SandboxedWorkflowRunner(restrictions=restrictions)
