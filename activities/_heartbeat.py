"""Keep an activity's heartbeat going while it awaits something slow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")

HEARTBEAT_EVERY_S = 1.0
"""How soon a cancel reaches a running call: Temporal tells an activity of a cancel only in
the answer to a heartbeat. Well inside the ~15 s heartbeat timeout, so a dead worker is
noticed in seconds too. Workers let heartbeats through this often (`worker/_build.py`)."""


async def with_heartbeat(awaitable: Awaitable[T], *, every_s: float = HEARTBEAT_EVERY_S) -> T:
    """Await `awaitable`, heartbeating every `every_s` seconds meanwhile.

    A cancel of the activity (its turn was cancelled) arrives as the answer to a
    heartbeat and cancels the activity's task, and so `awaitable` in it: the
    provider's request or the tool's coroutine stops where it waits.
    """

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
