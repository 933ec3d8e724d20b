"""API keys: read them from settings, keep only their SHA-256 digests, match in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.settings import TENANT_PATTERN, Settings

__all__ = [
    "MIN_KEY_CHARS",
    "ApiKey",
    "KeyConfigError",
    "KeyRing",
    "Role",
    "digest",
    "load_keys",
    "new_key",
]

Role = Literal["admin", "client"]
MIN_KEY_CHARS = 16
"""Keys are compared as fast digests, which is sound only for long random keys."""
_KEY_PREFIX = "keel_"


class ApiKey(BaseModel):
    """One accepted key, as its digest: the key itself is never kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    """Shown in logs and used to count the key's requests; never secret."""
    role: Role
    tenant: str | None = Field(default=None, pattern=TENANT_PATTERN)
    """The only tenant the key may use; unset means the default tenant (admins may pick)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class KeyConfigError(ValueError):
    """The configured keys cannot be used; the message names where, never a key."""


class KeyRing:
    """The keys a process accepts.

    Args:
        keys: the accepted keys; names and digests must be unique.

    Raises:
        KeyConfigError: a name or a key is listed twice.
    """

    def __init__(self, keys: Sequence[ApiKey] = ()) -> None:
        for attr in ("name", "sha256"):
            values = [getattr(key, attr) for key in keys]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                what = "key names" if attr == "name" else "keys (by digest)"
                shown = ", ".join(repeated) if attr == "name" else f"{len(repeated)} of them"
                raise KeyConfigError(f"{what} listed more than once: {shown}")
        self._keys = tuple(keys)
        self._digests = tuple(bytes.fromhex(key.sha256) for key in keys)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured; without one the API runs in dev mode."""
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, presented: str) -> ApiKey | None:
        """The key whose digest equals the presented key's, or None.

        Every entry is compared, with `hmac.compare_digest`, and the loop never
        stops early: how long a check takes tells nothing about which entry, or
        whether any, matched.
        """
        candidate = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found: ApiKey | None = None
        for key, stored in zip(self._keys, self._digests, strict=True):
            if hmac.compare_digest(candidate, stored):
                found = key
        return found


def digest(key: str) -> str:
    """The hex SHA-256 of a key, as the keys file stores it.

    A fast hash is the right tool here: a slow password hash (bcrypt, argon2)
    protects guessable secrets from offline guessing, but Keel's keys are 256
    random bits that no one can guess, and a fast digest keeps the check on
    every request at microseconds.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits), prefixed so it is recognisable in a secret scanner."""
    return _KEY_PREFIX + secrets.token_urlsafe(32)


def load_keys(settings: Settings) -> KeyRing:
    """The keys from `KEEL_ADMIN_KEYS`, `KEEL_CLIENT_KEYS` and `KEEL_KEYS_FILE`, together.

    Raises:
        KeyConfigError: an entry is malformed, too short, or the file is unreadable.
    """
    keys = [
        *_from_env(settings.admin_keys, "admin", "KEEL_ADMIN_KEYS"),
        *_from_env(settings.client_keys, "client", "KEEL_CLIENT_KEYS"),
    ]
    if settings.keys_file is not None:
        keys += _from_file(settings.keys_file)
    return KeyRing(keys)


def _from_env(text: str, role: Role, variable: str) -> Iterable[ApiKey]:
    """Entries `KEY` or `KEY@TENANT`, comma-separated; each named `<role>-<digest prefix>`."""
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key, at, tenant = entry.partition("@")
        where = f"{variable}: entry {position}"
        if len(key) < MIN_KEY_CHARS:
            raise KeyConfigError(
                f"{where} is shorter than {MIN_KEY_CHARS} characters; make one with `keel keys new`"
            )
        hashed = digest(key)
        try:
            yield ApiKey(
                name=f"{role}-{hashed[:8]}", role=role, tenant=tenant if at else None, sha256=hashed
            )
        except ValidationError:
            raise KeyConfigError(
                f"{where}: the tenant after '@' must be 1-64 letters, digits, '_' or '-'"
            ) from None


def _from_file(path: Path) -> list[ApiKey]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise KeyConfigError(f"KEEL_KEYS_FILE {path}: {err.strerror or err}") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise KeyConfigError(f"KEEL_KEYS_FILE {path}: not valid YAML or JSON") from None
    if not isinstance(data, list):
        raise KeyConfigError(f"KEEL_KEYS_FILE {path}: must be a list of {{name, role, sha256}}")
    keys: list[ApiKey] = []
    for index, entry in enumerate(data):
        try:
            keys.append(ApiKey.model_validate(entry))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise KeyConfigError(
                f"KEEL_KEYS_FILE {path}: entry {index} ({field}): {first['msg']}"
            ) from None
    return keys
