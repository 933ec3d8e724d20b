"""A2A over JSON-RPC at `/a2a`, built from a2a-sdk's server pieces.

a2a-sdk's `DefaultRequestHandler` runs sends, streams, gets and cancels; Keel
adds who the caller is (the gate's caller, as the call context), checks each
message before a task exists (so a bad one is a JSON-RPC error and leaves no
task behind), and the executor that runs it as a turn. Task records live in
this process (`InMemoryTaskStore`), scoped to the caller's tenant and user;
the conversation itself is the durable Keel session.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from a2a.auth.user import User
from a2a.extensions.common import HTTP_EXTENSION_HEADER, get_requested_extensions
from a2a.helpers import get_message_text
from a2a.server.agent_execution import RequestContext, RequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import ServerCallContextBuilder, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types.a2a_pb2 import Message, SendMessageRequest, Task
from a2a.utils.errors import InternalError, InvalidParamsError
from google.protobuf.json_format import MessageToDict
from starlette.requests import Request

from api._auth import Caller
from api.deps import AppState
from api.problems import Problem
from api.protocols._a2a_card import A2A_PATH, CARD_PATH, SKILL_KEY, agent_card, card_route
from api.protocols._a2a_executor import TURN_KEY, A2ATurn, KeelExecutor, a2a_error
from api.protocols._checks import turn_agent
from api.protocols._gate import CALLER_KEY, CallerGate, ProtocolRoute, caller_of
from api.schemas import ID_MAX_LENGTH, ID_PATTERN

_CONTEXT_ID = re.compile(ID_PATTERN)
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


class A2AServer:
    """The agent card and JSON-RPC routes, and the handler whose tasks the lifespan ends."""

    def __init__(self, state: AppState) -> None:
        self.handler = DefaultRequestHandler(
            agent_executor=KeelExecutor(state),
            task_store=InMemoryTaskStore(owner_resolver=_owner),
            # Only its capabilities are read here; the served card names the request's host.
            agent_card=agent_card(state, "http://localhost"),
            request_context_builder=_Requests(state),
        )
        (rpc,) = create_jsonrpc_routes(self.handler, A2A_PATH, context_builder=_CallContexts())
        self.routes = [
            ProtocolRoute(CARD_PATH, card_route(state), methods=["GET"]),
            ProtocolRoute(A2A_PATH, CallerGate(rpc.app, state), methods=["POST"]),
        ]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the API's lifespan: at its end, running tasks are stopped."""
        try:
            yield
        finally:
            await self.handler.aclose()


class _KeelUser(User):
    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    @property
    def is_authenticated(self) -> bool:
        return self._caller.key_name is not None

    @property
    def user_name(self) -> str:
        return self._caller.user_id


class _CallContexts(ServerCallContextBuilder):
    """The call context of a request the gate let in: its caller, and its headers but the
    credentials (a2a-sdk reads `A2A-Version` there, and logs call contexts at debug level)."""

    def build(self, request: Request) -> ServerCallContext:
        caller = caller_of(request)
        headers = {k: v for k, v in request.headers.items() if k not in _CREDENTIALS}
        return ServerCallContext(
            user=_KeelUser(caller),
            state={CALLER_KEY: caller, "headers": headers},
            requested_extensions=get_requested_extensions(
                request.headers.getlist(HTTP_EXTENSION_HEADER)
            ),
        )


def _owner(context: ServerCallContext) -> str:
    """Whose task it is: the caller's tenant and user (an admin key naming none: `anonymous`)."""
    caller: Caller = context.state[CALLER_KEY]
    return f"{caller.tenant}/{caller.user_id}"


class _Requests(RequestContextBuilder):
    """Check a message as `/v1/chat` would, and choose its ids: a new turn id as the task
    id, the session id as the context id (a new one for a message without contextId)."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        if params is None:
            return RequestContext(context, task_id=task_id, context_id=context_id, task=task)
        if task_id:
            raise InvalidParamsError(
                message="each message starts a new task (a Keel turn): send the contextId"
                " alone to continue; approvals are decided through Keel's approvals API"
            )
        if context_id and (
            len(context_id) > ID_MAX_LENGTH or not _CONTEXT_ID.fullmatch(context_id)
        ):
            raise InvalidParamsError(message=f"contextId must match {ID_PATTERN}")
        context.state[TURN_KEY] = await self._turn(context, params.message, context_id)
        return RequestContext(
            context,
            request=params,
            task_id=uuid.uuid4().hex,
            context_id=context_id or context.state[TURN_KEY].new_session_id,
        )

    async def _turn(
        self, context: ServerCallContext, message: Message, session_id: str | None
    ) -> A2ATurn:
        text = get_message_text(message)
        skill = MessageToDict(message.metadata).get(SKILL_KEY)
        if skill is not None and not isinstance(skill, str):
            raise InvalidParamsError(message=f"metadata.{SKILL_KEY} must be a skill id (a string)")
        state = self._state
        if state.client is None:
            raise InternalError(message="Temporal is not reachable yet")
        try:
            agent = await turn_agent(
                state,
                state.client,
                context.state[CALLER_KEY],
                text,
                session_id=session_id,
                agent=skill,
            )
        except Problem as problem:
            raise a2a_error(problem) from None
        return A2ATurn(
            text=text,
            agent=agent,
            session_id=session_id,
            new_session_id=None if session_id else uuid.uuid4().hex,
        )
