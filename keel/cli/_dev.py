"""`keel dev`: the Temporal dev server, a worker, the API and the Temporal UI in one command."""

from __future__ import annotations

import argparse
import asyncio
import sys

from keel.cli._serve import serve, stop_on_signals
from keel.devserver import DevServer
from keel.formation import Formation
from keel.keys import load_keys
from keel.logging import get_logger
from keel.settings import Settings

log = get_logger("keel")


async def run_dev(settings: Settings, formation: Formation, args: argparse.Namespace) -> int:
    """Run everything until Ctrl-C; data persists in the data dir across restarts."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    server = DevServer(
        settings.resolved_data_dir, port=args.temporal_port, ui_port=args.ui_port, ip="127.0.0.1"
    )
    server.start()
    watcher = asyncio.create_task(_stop_if_server_dies(server, stop))
    try:
        serving = asyncio.create_task(
            serve(settings, formation, stop, api=(args.host, args.port), worker=True)
        )
        await asyncio.sleep(0)
        _banner(settings, args)
        await serving
    finally:
        watcher.cancel()
        server.stop()
    code = server.exited()
    return 0 if stop.is_set() else (code or 1)


async def _stop_if_server_dies(server: DevServer, stop: asyncio.Event) -> None:
    await asyncio.to_thread(server.wait)
    log.error(
        "the Temporal dev server exited; see temporal.log in the data dir", code=server.exited()
    )
    stop.set()


def _banner(settings: Settings, args: argparse.Namespace) -> None:
    api = f"http://{args.host}:{args.port}"
    keys = len(load_keys(settings))
    auth = "-H 'authorization: Bearer <key>' " if keys else ""
    access = (
        [f"  {keys} API key(s) configured: every /v1 call needs one (docs/security.md)."]
        if keys
        else [
            "  No API keys are set: the API trusts every caller, so it serves on loopback only.",
            "  To require keys: `keel keys new`, then set KEEL_ADMIN_KEYS / KEEL_CLIENT_KEYS",
            "  (or KEEL_KEYS_FILE) and restart; see docs/security.md.",
        ]
    )
    lines = [
        "",
        f"  Keel API      {api}   (OpenAPI: {api}/docs)",
        f"  Console       {api}/console",
        f"  Temporal UI   {settings.temporal_ui_url}",
        f"  Temporal      {settings.temporal_address}   data: {settings.resolved_data_dir}",
        "",
        f"  try:  curl -s {api}/v1/chat {auth}-H 'content-type: application/json' \\",
        '          -d \'{"message": "hello"}\'',
        "",
        *access,
        "  Ctrl-C stops everything.",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
