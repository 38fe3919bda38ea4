"""Token pacing for the model-server stand-ins: each token waits for its slot on a fixed schedule."""

from __future__ import annotations

import asyncio

__all__ = ["token_slot"]


async def token_slot(delay_s: float, i: int, next_at: float) -> float:
    """Wait for token ``i``'s slot, ``delay_s`` after the previous one's (``next_at``); returns this slot.

    The schedule is fixed, so the server's own overhead never adds up; a server that fell behind by more
    than one slot restarts the schedule from now instead of bursting. At no delay the loop still yields
    every 64 tokens, so one stream cannot hold it."""
    loop = asyncio.get_running_loop()
    if delay_s > 0:
        next_at = max(next_at + delay_s, loop.time() - delay_s)
        wait = next_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
    elif i % 64 == 63:
        await asyncio.sleep(0)
    return next_at
