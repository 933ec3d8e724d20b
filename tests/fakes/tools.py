"""Python tools for tests: small, deterministic, and with schemas worth validating against."""

from __future__ import annotations

import asyncio
import os
import time

import keel


@keel.tool
def lookup(invoice: int) -> str:
    """Look up an invoice.

    Args:
        invoice: The invoice number.
    """
    return f"invoice {invoice}: 40 EUR"


@keel.tool
def search(query: str) -> str:
    """Search the knowledge base."""
    return f"nothing found for {query!r}"


@keel.tool
def big(size: int) -> str:
    """A result of `size` characters, to test results too large for history."""
    return "x" * size


@keel.tool
async def slow(seconds: float, context: keel.ToolContext) -> str:
    """Wait, then answer; each attempt's idempotency key goes to $KEEL_TEST_TOOL_LOG if set.

    Crash tests kill a worker during this call and check the retry carries the same key.
    """
    log = os.environ.get("KEEL_TEST_TOOL_LOG")
    if log:
        await asyncio.to_thread(_append, log, context.idempotency_key)
    await asyncio.sleep(seconds)
    return "slow done"


@keel.tool
async def dawdle(seconds: float, log: str) -> str:
    """Wait, noting in the file `log` when it starts and when it ends: `done`, or `cancelled`.

    Turn-control tests cancel the turn during this call and read when the tool stopped.
    """
    _append(log, f"started {time.time()}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _append(log, f"cancelled {time.time()}")
        raise
    _append(log, f"done {time.time()}")
    return "dawdled"


def _append(path: str, line: str) -> None:
    with open(path, "a") as out:
        out.write(line + "\n")
