"""A Python tool of a second formation (tests/test_formations.py): one the first lacks."""

from __future__ import annotations

import keel


@keel.tool
def forecast(city: str) -> str:
    """Tomorrow's weather.

    Args:
        city: Where.
    """
    return f"rain in {city}"
