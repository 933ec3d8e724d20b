"""`/v1/triggers`: named ways for the outside world (webhooks, jobs) to start a turn."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from api import _sessions
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem
from api.schemas import ID_PATTERN, ChatAccepted, ChatResponse
from keel.formation import TriggerConfig
from keel.session import SendMessageInput
from keel.triggers import TriggerDataError, render_message, signature_ok

router = APIRouter(prefix="/v1/triggers", tags=["triggers"])


class TriggerOut(BaseModel):
    """A trigger of the formation."""

    name: str
    agent: str
    schedule: str | None
    signed: bool
    """Whether calls must carry an `X-Keel-Signature` HMAC header."""


class TriggerList(BaseModel):
    """`GET /v1/triggers`."""

    triggers: list[TriggerOut]


class FireTrigger(BaseModel):
    """`POST /v1/triggers/{name}`."""

    data: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """Continue this session instead of starting one."""
    mode: Literal["sync", "async"] = "async"
    wait_s: float = Field(default=120, gt=0, le=3600)


@router.get("")
async def list_triggers(state: State) -> TriggerList:
    """The formation's triggers."""
    return TriggerList(
        triggers=[
            TriggerOut(name=t.name, agent=t.agent, schedule=t.schedule, signed=bool(t.secret_env))
            for t in state.formation.triggers
        ]
    )


@router.post(
    "/{name}",
    responses={202: {"model": ChatAccepted, "description": "async mode, or sync past `wait_s`"}},
)
async def fire_trigger(
    name: str,
    body: FireTrigger,
    request: Request,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    x_keel_signature: Annotated[str | None, Header(max_length=200)] = None,
) -> ChatAccepted | ChatResponse:
    """Render the trigger's template with `data` and send it to its agent."""
    trigger = _trigger(state.formation.triggers, name)
    if trigger.secret_env:
        secret = os.environ.get(trigger.secret_env)
        if not secret:
            # Fail closed: an unset secret must not turn signing off.
            raise Problem(503, f"trigger {name!r} has no signing secret configured")
        if not signature_ok(secret.encode(), await request.body(), x_keel_signature):
            raise Problem(401, "missing or wrong X-Keel-Signature", type_="bad-signature")
    try:
        message = render_message(trigger.template, body.data)
    except TriggerDataError as err:
        raise Problem(422, str(err), type_="trigger-data", missing=err.missing) from None
    session, handle = await _sessions.open_or_start(
        state,
        client,
        caller,
        session_id=body.session_id,
        agent=None if body.session_id else trigger.agent,
        user_id=None,
    )
    sent = await _sessions.send_message(handle, SendMessageInput(text=message))
    return await _sessions.answer_or_accept(
        handle,
        session,
        sent,
        wait_s=body.wait_s if body.mode == "sync" else None,
        response=response,
    )


def _trigger(triggers: list[TriggerConfig], name: str) -> TriggerConfig:
    for trigger in triggers:
        if trigger.name == name:
            return trigger
    raise Problem(404, f"no trigger named {name!r}", type_="trigger-not-found")
