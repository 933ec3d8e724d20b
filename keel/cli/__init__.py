"""The `keel` command: dev, api, worker, chat, validate, keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from keel import __version__
from keel.cli._keys import add_keys_parser, open_bind_refusal, run_keys
from keel.formation import Formation, FormationError, FormationProblem, load_formation
from keel.keys import KeyConfigError, load_keys
from keel.logging import configure_logging, get_logger, quiet_http_clients
from keel.settings import Settings
from keel.tools import BUILTIN_TOOLS, load_python_tools, python_tools_path

__all__ = ["main"]

EXIT_INVALID = 2
log = get_logger("keel")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `keel` command line; returns the exit code (`dev`, `api` and `worker` exit)."""
    args = _parser().parse_args(argv)
    if args.command == "keys":
        return run_keys(args)
    try:
        settings = _settings(args)
    except ValidationError as err:
        for problem in err.errors():
            message = problem["msg"].removeprefix("Value error, ")
            if problem["loc"]:  # a field's own problem; else one of several fields together
                message = (
                    "KEEL_" + "_".join(str(p) for p in problem["loc"]).upper() + f": {message}"
                )
            _fail(message)
        return EXIT_INVALID
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if args.command == "chat":
        from keel.cli._chat import run_chat

        quiet_http_clients()

        return run_chat(
            args.url,
            session_id=args.session,
            agent=args.agent,
            user=args.user,
            api_key=os.environ.get("KEEL_API_KEY"),
        )
    if args.command == "validate":
        return _validate(args.path)
    if args.command in ("api", "dev"):
        try:
            refusal = open_bind_refusal(args.host, load_keys(settings))
        except KeyConfigError as err:
            refusal = str(err)
        if refusal:
            _fail(refusal)
            return EXIT_INVALID
    path = _formation_path(settings)
    try:
        formation = _formation(path)
    except FormationError as err:
        _fail(str(err))
        return EXIT_INVALID
    python_tools_path(path)
    try:
        if args.command == "dev":
            from keel.cli._dev import run_dev

            _exit_without_teardown(asyncio.run(run_dev(settings, formation, args)))
        from keel.cli._serve import serve, stop_on_signals

        async def run() -> None:
            stop = asyncio.Event()
            stop_on_signals(stop)
            if args.command == "api":
                await serve(settings, formation, stop, api=(args.host, args.port), worker=False)
            else:
                await serve(
                    settings,
                    formation,
                    stop,
                    api=None,
                    worker=True,
                    task_queues=args.task_queue,
                    max_concurrent_activities=args.max_concurrent_activities,
                )

        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except FormationError as err:  # found by the worker at start: tools that do not resolve
        _fail(str(err))
        _exit_without_teardown(EXIT_INVALID)
    _exit_without_teardown(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keel", description="A durable runtime for AI agents.")
    parser.add_argument("--version", action="version", version=f"keel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run Temporal, a worker, the API and the UI locally")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.add_argument("--data-dir", type=Path)
    dev.add_argument("--formation", type=Path)

    api = commands.add_parser("api", help="run the HTTP API against KEEL_TEMPORAL_ADDRESS")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--formation", type=Path)

    worker = commands.add_parser("worker", help="run a worker against KEEL_TEMPORAL_ADDRESS")
    worker.add_argument("--formation", type=Path)
    worker.add_argument(
        "--task-queue",
        action="append",
        help="poll only this queue (repeatable); default: the formation's sessions and"
        " activities queues (keel-sessions.<id>, keel-activities.<id>; no suffix for the"
        " formation 'default') and its model queues",
    )
    worker.add_argument("--max-concurrent-activities", type=int, default=100)
    worker.add_argument(
        "--deployment",
        help="the Temporal Worker Deployment this worker belongs to (with --build-id)",
    )
    worker.add_argument(
        "--build-id", help="this worker's build: sessions stay on the build they started on"
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics (Keel's and the Temporal SDK's) on this port",
    )

    chat = commands.add_parser("chat", help="talk to an agent from this terminal")
    chat.add_argument("--session", help="resume this session")
    chat.add_argument("--agent", help="the agent of a new session (default: the formation's)")
    chat.add_argument("--url", default=os.environ.get("KEEL_URL", "http://127.0.0.1:8000"))
    chat.add_argument("--user", help="your user id (X-User-Id)")

    validate = commands.add_parser("validate", help="check a formation file")
    validate.add_argument("path", type=Path)
    add_keys_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "formation", None):
        overrides["formation"] = args.formation
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "deployment", None):
        overrides["worker_deployment"] = args.deployment
    if getattr(args, "build_id", None):
        overrides["worker_build_id"] = args.build_id
    if getattr(args, "metrics_port", None):
        overrides["metrics_port"] = args.metrics_port
    if args.command == "dev":
        overrides["temporal_address"] = f"127.0.0.1:{args.temporal_port}"
        overrides["temporal_ui_url"] = f"http://127.0.0.1:{args.ui_port}"
    return Settings(**overrides)  # type: ignore[arg-type]


def _formation_path(settings: Settings) -> Path | None:
    """The formation file named by flag or env, else ./formation.yaml; None: the built-in one."""
    path = settings.formation
    if path is None and Path("formation.yaml").is_file():
        path = Path("formation.yaml")
    return path


def _formation(path: Path | None) -> Formation:
    formation = load_formation(path)
    log.info("formation loaded", formation=formation.id, path=str(path or "built-in"))
    return formation


def _validate(path: Path) -> int:
    """Check the file, then import its `python_tools` as a worker would, and check their names.

    MCP tool names are left to the worker: listing them needs the servers.
    """
    try:
        formation = load_formation(path)
        python_tools_path(path)
        tools = _python_tools(formation, source=str(path))
    except FormationError as err:
        _fail(str(err))
        return EXIT_INVALID
    sys.stdout.write(
        f"{path}: ok (formation {formation.id!r}, {len(formation.agents)} agents,"
        f" {len(formation.models)} models, {len(tools)} Python tools)\n"
    )
    return 0


def _python_tools(formation: Formation, *, source: str) -> list[str]:
    """The names of the formation's Python tools, once each bare tool name resolves to one."""
    try:
        tools = load_python_tools(formation.python_tools)
    except FormationError as err:
        raise FormationError(err.problems, source) from None
    problems = formation.unresolved_tools({*tools, *BUILTIN_TOOLS})
    problems += [
        FormationProblem("python_tools", f"tool {name!r} has the name of a built-in tool")
        for name in sorted(BUILTIN_TOOLS & tools.keys())
    ]
    if problems:
        raise FormationError(problems, source)
    return sorted(tools)


def _exit_without_teardown(code: int) -> NoReturn:
    """End a process that ran a Temporal client, once everything Keel opened is closed.

    The SDK's Rust threads can call into Python while the interpreter finalizes,
    which aborts the process (temporalio/sdk-python#300): a clean stop on SIGTERM
    would then exit by SIGABRT, and a supervisor would count it as a crash.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str) -> None:
    sys.stderr.write(f"keel: {message}\n")
