"""Temporal Schedules for triggers with a `schedule`: created, updated and deleted to match."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from keel.formation import Formation, TriggerConfig
from keel.logging import get_logger
from keel.session import SESSION_WORKFLOW, new_session_input, session_workflow_id
from keel.settings import Settings
from keel.temporal import (
    AGENT_ATTR,
    FORMATION_ATTR,
    PENDING_APPROVALS_ATTR,
    TENANT_ATTR,
    USER_ATTR,
    task_queues,
)
from keel.triggers import render_message

__all__ = ["schedule_id", "sync_schedules"]

SCHEDULE_USER = "schedule"
"""The user that scheduled runs belong to."""
log = get_logger(__name__)


def schedule_id(formation: Formation, trigger: TriggerConfig) -> str:
    """Schedule ids carry the formation id, so formations sharing a namespace never collide."""
    return f"keel/{formation.id}/{trigger.name}"


def _schedule(formation: Formation, trigger: TriggerConfig, settings: Settings) -> Schedule:
    assert trigger.schedule is not None
    agent = formation.agent(trigger.agent)
    queues = task_queues(settings, formation)
    start = new_session_input(
        formation,
        agent,
        tenant=settings.tenant,
        user_id=SCHEDULE_USER,
        activities_task_queue=queues.activities,
        initial_message=render_message(trigger.template, {}),
        close_when_idle=True,
    )
    return Schedule(
        # Temporal appends the run's time to this id, one session per run; the formation
        # id keeps two formations' triggers of one name and time apart.
        action=ScheduleActionStartWorkflow(
            SESSION_WORKFLOW,
            start,
            id=session_workflow_id(settings.tenant, f"scheduled-{formation.id}-{trigger.name}"),
            task_queue=queues.sessions,
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(FORMATION_ATTR, formation.id),
                    SearchAttributePair(TENANT_ATTR, settings.tenant),
                    SearchAttributePair(USER_ATTR, SCHEDULE_USER),
                    SearchAttributePair(AGENT_ATTR, agent.name),
                    SearchAttributePair(PENDING_APPROVALS_ATTR, 0),
                ]
            ),
            static_summary=f"trigger {trigger.name} ({trigger.schedule})",
        ),
        spec=ScheduleSpec(cron_expressions=[trigger.schedule]),
    )


async def sync_schedules(client: Client, formation: Formation, settings: Settings) -> None:
    """Make this formation's schedules exactly its scheduled triggers.

    Idempotent, so every worker may run it at start.

    Raises:
        keel.triggers.TriggerDataError: a scheduled trigger's template needs data,
            which a schedule has none of.
    """
    prefix = f"keel/{formation.id}/"
    wanted = {
        schedule_id(formation, t): _schedule(formation, t, settings)
        for t in formation.triggers
        if t.schedule
    }
    existing = {s.id async for s in await client.list_schedules() if s.id.startswith(prefix)}
    for id_ in existing - wanted.keys():
        await client.get_schedule_handle(id_).delete()
        log.info("schedule deleted", schedule=id_)
    for id_, schedule in wanted.items():
        if id_ in existing:

            def replace(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(id_).update(replace)
            log.info("schedule updated", schedule=id_)
            continue
        try:
            await client.create_schedule(id_, schedule)
            log.info("schedule created", schedule=id_)
        except ScheduleAlreadyRunningError:
            pass  # another worker created it a moment ago
