"""`keel keys new`, and the rule that an API without keys serves only on loopback."""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys

from keel.keys import KeyRing, digest, new_key
from keel.settings import TENANT_PATTERN

NO_KEYS_HINT = (
    "set KEEL_ADMIN_KEYS / KEEL_CLIENT_KEYS or KEEL_KEYS_FILE"
    " (`keel keys new` makes a key), or serve on 127.0.0.1"
)


def add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keel keys new` to the command line."""
    keys = commands.add_parser("keys", help="make API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    new = actions.add_parser("new", help="print a fresh key, and its line for a keys file")
    new.add_argument("--role", choices=["client", "admin"], default="client")
    new.add_argument("--tenant", help="bind the key to this tenant")
    new.add_argument("--name", help="the key's name in logs (default: <role>-<digest prefix>)")


def run_keys(args: argparse.Namespace) -> int:
    """Print a new key: once, to stdout; only its digest belongs in a keys file."""
    tenant: str | None = args.tenant
    if tenant is not None and not re.match(TENANT_PATTERN, tenant):
        sys.stderr.write("keel: --tenant must be 1-64 letters, digits, '_' or '-'\n")
        return 2
    key = new_key()
    hashed = digest(key)
    name = args.name or f"{args.role}-{hashed[:8]}"
    variable = "KEEL_ADMIN_KEYS" if args.role == "admin" else "KEEL_CLIENT_KEYS"
    bound = f"@{tenant}" if tenant else ""
    entry = f"name: {name}, role: {args.role}, " + (f"tenant: {tenant}, " if tenant else "")
    sys.stdout.write(
        f"key:     {key}\n"
        f"sha256:  {hashed}\n\n"
        "Give the key to its user; it is not shown again. Then either set\n"
        f"  {variable}={key}{bound}\n"
        "or add this line to the file KEEL_KEYS_FILE names (it holds digests only):\n"
        f"  - {{{entry}sha256: {hashed}}}\n"
    )
    return 0


def open_bind_refusal(host: str, keys: KeyRing) -> str | None:
    """Why the API must not serve on `host`, or None: without keys, loopback only."""
    if keys.enabled or _is_loopback(host):
        return None
    return f"refusing to serve on {host} without API keys: {NO_KEYS_HINT}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
