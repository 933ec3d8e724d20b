"""`/v1/triggers`: named ways for the outside world (webhooks, jobs) to start a turn."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from api._auth import Caller
from api._idempotency import Idempotent
from api._turns import TurnRequest, send_claimed_turn
from api.deps import (
    AUTHENTICATED,
    State,
    TemporalClient,
    authenticate,
    bearer,
    enforce_rate_limit,
    get_caller,
)
from api.problems import V1_PROBLEMS, Problem, problem_responses
from api.schemas import (
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    ChatAccepted,
    ChatResponse,
    JsonObject,
    OptionalId,
    TenantIdHeader,
    UserIdHeader,
)
from keel.formation import TriggerConfig
from keel.triggers import TriggerDataError, render_message, signature_ok
from keel.wire import TriggerList, TriggerOut

router = APIRouter(prefix="/v1/triggers", tags=["triggers"])


class FireTrigger(BaseModel):
    """`POST /v1/triggers/{name}`."""

    data: JsonObject = Field(default_factory=dict)
    session_id: OptionalId = None
    """Continue this session instead of starting one."""
    mode: Literal["sync", "async"] = "async"
    wait_s: float = Field(default=120, gt=0, le=3600)


WEBHOOK_USER = "webhook"
"""The user that sessions started by signed webhooks belong to."""


@router.get("", dependencies=AUTHENTICATED, responses=V1_PROBLEMS)
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
    responses={
        202: {"model": ChatAccepted, "description": "async mode, or sync past `wait_s`"},
        **problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def fire_trigger(
    name: Annotated[str, Path(pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH)],
    body: FireTrigger,
    request: Request,
    state: State,
    client: TemporalClient,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    idempotency: Idempotent,
    x_keel_signature: Annotated[str | None, Header(max_length=200)] = None,
    x_user_id: UserIdHeader = None,
    x_tenant_id: TenantIdHeader = None,
) -> ChatAccepted | ChatResponse:
    """Render the trigger's template with `data` and send it to its agent.

    A signed trigger needs only its signature (webhook senders cannot add a
    key); any other trigger needs an API key like every `/v1` route.
    """
    trigger = _trigger(state.formation.triggers, name)
    if trigger.secret_env:
        secret = os.environ.get(trigger.secret_env)
        if not secret:
            # Fail closed: an unset secret must not turn signing off.
            raise Problem(503, f"trigger {name!r} has no signing secret configured")
        if not signature_ok(secret.encode(), await request.body(), x_keel_signature):
            raise Problem(401, "missing or wrong X-Keel-Signature", type_="bad-signature")
        caller = Caller(state.settings.tenant, WEBHOOK_USER, True, role="client")
    else:
        key = await authenticate(state, credentials)
        caller = await get_caller(request, state, key, x_user_id, x_tenant_id)
        await enforce_rate_limit(state, caller)
    try:
        message = render_message(trigger.template, body.data)
    except TriggerDataError as err:
        raise Problem(422, str(err), type_="trigger-data", missing=err.missing) from None
    claim = await idempotency.claim(caller, body, "turn_id", "session_id")
    turn = TurnRequest(
        text=message,
        session_id=body.session_id,
        agent=None if body.session_id else trigger.agent,
        mode=body.mode,
        wait_s=body.wait_s,
    )
    answer = await send_claimed_turn(state, client, caller, turn, claim, response=response)
    assert not isinstance(answer, EventSourceResponse)
    return answer


def _trigger(triggers: list[TriggerConfig], name: str) -> TriggerConfig:
    for trigger in triggers:
        if trigger.name == name:
            return trigger
    raise Problem(404, f"no trigger named {name!r}", type_="trigger-not-found")
