"""Python tools for tests: small, deterministic, and with schemas worth validating against."""

from __future__ import annotations

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
