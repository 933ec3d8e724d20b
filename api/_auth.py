"""Who is calling: the API key presented, and the tenant and user it acts for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from api.problems import Problem
from keel.keys import ApiKey, KeyRing

ANONYMOUS = "anonymous"
CallerRole = Literal["admin", "client", "dev"]
_CHALLENGE = 'Bearer realm="keel"'


@dataclass(frozen=True)
class Caller:
    """The caller of a request: whose sessions it may see, in which tenant.

    `dev` callers exist only while no key is configured (the API then serves
    loopback only). A caller that names a user — every client key must — sees
    only that user's data; an admin key that names none sees its whole tenant.
    """

    tenant: str
    user_id: str
    user_given: bool
    """Whether the caller named a user (else `anonymous` is assumed)."""
    role: CallerRole = "dev"
    key_name: str | None = None
    """The key's name from the configuration; None in dev mode."""

    @property
    def limited(self) -> bool:
        """Whether limits apply: to callers with a key, not in dev mode (loopback only)."""
        return self.key_name is not None

    def can_see(self, owner: str) -> bool:
        """Whether data of user `owner` is visible to this caller."""
        return not self.user_given or owner == self.user_id

    def user_filter(self, requested: str | None) -> str | None:
        """The user a listing is restricted to: the caller's own when it named one."""
        return self.user_id if self.user_given else requested

    def owner_for(self, requested: str | None) -> str:
        """The user a new session belongs to; a client key may name only its own.

        Raises:
            Problem: 403 when a client key asks for another user.
        """
        if requested is None or requested == self.user_id:
            return self.user_id
        if self.role == "client":
            raise Problem(
                403, "a client key acts only for the user in X-User-Id", type_="user-forbidden"
            )
        return requested


def resolve_caller(
    key: ApiKey | None,
    default_tenant: str,
    *,
    user_id: str | None,
    tenant_id: str | None,
) -> Caller:
    """The caller, from the request's key and headers.

    Args:
        key: the request's key, as `match_key` found it; None in dev mode (no keys).
        default_tenant: `KEEL_TENANT`, for keys bound to no tenant.
        user_id: `X-User-Id`, if sent.
        tenant_id: `X-Tenant-Id`, if sent; honoured only for admin keys bound to
            no tenant, and refused when it names another tenant than the caller's.

    Raises:
        Problem: 422 for a client key without `X-User-Id`; 403 for an
            `X-Tenant-Id` the key may not use.
    """
    if key is None:
        caller = Caller(default_tenant, user_id or ANONYMOUS, user_id is not None)
        return _check_tenant(caller, tenant_id)
    if key.role == "client" and user_id is None:
        raise Problem(422, "a client key must name its user in X-User-Id", type_="user-id-required")
    if key.role == "admin" and key.tenant is None and tenant_id is not None:
        tenant = tenant_id
    else:
        tenant = key.tenant or default_tenant
    caller = Caller(
        tenant,
        user_id or ANONYMOUS,
        user_id is not None,
        role=key.role,
        key_name=key.name,
    )
    return _check_tenant(caller, tenant_id)


def match_key(keys: KeyRing, bearer: str | None) -> ApiKey:
    """The configured key `bearer` is.

    Raises:
        Problem: 401 without a key or with one that is not configured.
    """
    if bearer is None:
        raise Problem(
            401,
            "this API needs a key: send `Authorization: Bearer <key>`",
            type_="unauthorized",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    key = keys.match(bearer)
    if key is None:
        raise Problem(
            401,
            "the API key is not valid",
            type_="unauthorized",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )
    return key


def _check_tenant(caller: Caller, requested: str | None) -> Caller:
    if requested is not None and requested != caller.tenant:
        raise Problem(403, "this caller may not choose X-Tenant-Id", type_="tenant-forbidden")
    return caller
