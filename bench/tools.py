"""The benchmark's one tool: as cheap as a tool can be, so the runtime's cost shows."""

from __future__ import annotations

import keel


@keel.tool
def lookup(id: int) -> str:
    """Look a record up by id."""
    return f"record {id}"
