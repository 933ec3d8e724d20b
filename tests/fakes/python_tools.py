"""Python tools for tests, listed in formations as `python_tools: [tests.fakes.python_tools]`."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

from pydantic import Field

import keel


@keel.tool
async def add(a: int, b: Annotated[int, Field(description="The second number.", ge=0)] = 1) -> int:
    """Add two numbers.

    Longer notes the model need not see.

    Args:
        a: The first number.
    """
    return a + b


@keel.tool(name="lookup_invoice", inject=("invoices",))
def lookup(invoice_id: str, invoices: dict[str, dict[str, object]]) -> dict[str, object]:
    """Look an invoice up by its number."""
    return invoices[invoice_id]


@keel.tool
def whoami(ctx: keel.ToolContext) -> dict[str, str]:
    """The call this tool serves, and the thread it runs in."""
    return {"key": ctx.idempotency_key, "thread": threading.current_thread().name}


@keel.tool(timeout_s=0.2)
async def nap(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "rested"


@keel.tool
def explode(message: str) -> str:
    """Raise an error."""
    raise RuntimeError(message)


def not_a_tool() -> None:
    """Plain functions are not collected."""
