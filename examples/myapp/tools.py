"""Python tools for the tools example: plain typed functions marked with `@keel.tool`."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field

import keel

INVOICES = {
    "INV-1": {"customer": "Ann", "total_eur": 120.0, "due": "2026-12-31"},
    "INV-2": {"customer": "Bob", "total_eur": 75.5, "due": "2027-01-15"},
}


@keel.tool
async def lookup_invoice(invoice_id: str) -> dict[str, object]:
    """Look an invoice up by its number.

    Args:
        invoice_id: The invoice number, such as INV-1.
    """
    if invoice_id not in INVOICES:
        raise KeyError(f"no invoice {invoice_id}")  # the model is told, and the turn goes on
    return INVOICES[invoice_id]


@keel.tool
def days_until(
    day: date, today: Annotated[date | None, Field(description="Default: today.")] = None
) -> int:
    """Count the days from today until a date."""
    return (day - (today or date.today())).days
