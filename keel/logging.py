"""structlog set-up: JSON off a TTY, console on one, ids bound through contextvars."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "get_logger", "quiet_http_clients"]

HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")
"""Loggers of the HTTP client libraries: one INFO line per request."""


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and the standard library's loggers through one pipeline.

    Args:
        level: the minimum level (`debug`, `info`, `warning`, `error`).
        fmt: `json`, `console` or `auto` (console when stderr is a TTY).
    """
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if as_json else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Uvicorn's access log duplicates our request log line.
    logging.getLogger("uvicorn.access").disabled = True


def quiet_http_clients() -> None:
    """Keep the HTTP client libraries to warnings and worse.

    For `keel chat`: its conversation shares the terminal with the log, and
    httpx's `HTTP Request: …` line per call would interleave with it.
    """
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _identity(
    logger: structlog.types.WrappedLogger, name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; bind ids with `structlog.contextvars.bind_contextvars`."""
    return structlog.stdlib.get_logger(name)
