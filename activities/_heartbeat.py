"""Keep an activity's heartbeat going while it awaits something slow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")

HEARTBEAT_EVERY_S = 5.0
"""Well inside the ~15 s heartbeat timeout, so a dead worker is noticed in seconds."""


async def with_heartbeat(awaitable: Awaitable[T], *, every_s: float = HEARTBEAT_EVERY_S) -> T:
    """Await `awaitable`, heartbeating every `every_s` seconds meanwhile."""

    async def beat() -> None:
        # Not at once: the server times a silent attempt out from its start, so a
        # call shorter than `every_s` (most are) need not pay for a heartbeat RPC.
        while True:
            await asyncio.sleep(every_s)
            activity.heartbeat()

    beater = asyncio.create_task(beat())
    try:
        return await awaitable
    finally:
        beater.cancel()
