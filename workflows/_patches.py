"""Every patch of the session workflow, and the one marker that stands for those of a baseline.

A `workflow.patched(id)` costs each run that reaches it two commands, and so two history
events: the marker, and the SDK core's upsert of `TemporalChangeVersion`, a visibility
write on the server. With a patch per change, a new session paid six of each in its
first turns (the replay corpus's `approval_approve`). A run of today's code records one
marker, `BASELINE_PATCH`, the first time it reaches any patch of `BASELINE`, and every
patch of the baseline is then true without a marker of its own. A history without that
marker (recorded before it existed) replays each patch on its own marker, as recorded:
the baseline is asked first, at the first patch a run reaches, and the SDK remembers its
answer for the run.

Never add an id to `BASELINE`: a history recorded with this baseline would then take
that patch's new branch on replay, which it never ran. A later patch calls `patched` and
gets a marker of its own, until a new baseline (a new id covering it too) replaces this one.
"""

from __future__ import annotations

from temporalio import workflow

MEMORY_PATCH = "keel-memory-1"
"""Sessions started before memory steps existed replay without them."""
SUMMARY_PATCH = "keel-summary-memo-1"
"""Sessions started before this keep no summary in their memo."""
MIRROR_ON_CHANGE_PATCH = "keel-mirror-on-change-1"
"""Sessions started before this upsert their memo after every turn. Each upsert costs the
Temporal server about a third of its CPU per turn (docs/performance.md)."""
PENDING_ATTR_PATCH = "keel-pending-approvals-attr-1"
"""Sessions started before this never set `KeelPendingApprovals`: the approvals inbox
(which lists sessions by it) leaves them out."""
PENDING_ATTR_IF_STARTED_PATCH = "keel-pending-approvals-if-started-1"
"""Sessions set `KeelPendingApprovals` only when they started with it. Temporal fails the
workflow task of an upsert of an attribute it does not know, on every retry: a session
started by a client that did not set it (an older API, or a namespace without it) must
never upsert it. Before this, sessions upserted it whatever they started with."""
SYNC_FAILED_TURN_PATCH = "keel-sync-failed-turn-1"
"""Sessions started before this keep a failed turn's messages for the next model call."""
CHUNKED_RESEED_PATCH = "keel-chunked-reseed-1"
"""Sessions that re-seeded in one model call before this replay that way."""
STEP_IN_CHILD_ID_PATCH = "keel-child-id-step-1"
"""Children started before this are named `<session>/<turn>/<call>`: a vendor's repeated
call id could name two of them alike."""
ASK_CYCLE_PATCH = "keel-ask-cycle-1"
"""Before this, an ask of the asking session (or of one waiting on it) ran its activity."""
STARTED_IN_SEND_PATCH = "keel-started-in-send-1"
"""`send_message` to an idle session answers with the turn's `turn.started`."""
TOOLS_ON_SESSION_QUEUE_PATCH = "keel-tools-on-session-queue-1"
"""Tool calls run on the session's own queue, so they start eagerly as model calls do;
sessions that scheduled them on `keel-activities` before replay that way."""

TURN_CONTROL_PATCH = "keel-turn-control-1"
"""A turn can be cancelled (`cancel_turn`, `on_busy: interrupt | rollback`): its call under
way is cancelled, its approvals close, its messages are settled or rolled back. Asked only
when a run first cancels a turn, so sessions that never do record no marker for it."""

MODEL_FALLBACK_PATCH = "keel-model-fallback-1"
"""A model call whose model failed (attempts spent, or its circuit open) runs again with
the model's `fallbacks`, in order. Asked only when a call fails and the agent's model has
fallbacks, so sessions that never fall back record no marker for it."""

PLANNER_PATCH = "keel-planner-1"
"""A `planner` agent's turn proposes a plan and runs its steps (`workflows/_planner.py`).
Asked only in a planner's turns: no session of another agent records a marker for it."""

USAGE_ROLLUP_PATCH = "keel-usage-rollup-1"
"""A delegated specialist's tokens and cost count in the parent's turn. Asked only when a
run delegates, so sessions that never do record no marker for it; children that answered
before replay without the roll-up."""

BASELINE_PATCH = "keel-baseline-2026-12-04"
"""One marker for every patch of `BASELINE`, in runs of code that knows them all."""
BASELINE = frozenset(
    {
        MEMORY_PATCH,
        SUMMARY_PATCH,
        MIRROR_ON_CHANGE_PATCH,
        PENDING_ATTR_PATCH,
        PENDING_ATTR_IF_STARTED_PATCH,
        SYNC_FAILED_TURN_PATCH,
        CHUNKED_RESEED_PATCH,
        STEP_IN_CHILD_ID_PATCH,
        ASK_CYCLE_PATCH,
        STARTED_IN_SEND_PATCH,
        TOOLS_ON_SESSION_QUEUE_PATCH,
    }
)
"""The patches the baseline stands for. Fixed forever (see the module's docstring)."""


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, through the baseline's one marker where it covers the id."""
    if patch_id in BASELINE and workflow.patched(BASELINE_PATCH):
        return True
    return workflow.patched(patch_id)
