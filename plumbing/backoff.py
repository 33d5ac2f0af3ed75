"""Reconnect back-off with jitter: clients that lost the same server must not all retry at once."""

from __future__ import annotations

import random


def jittered(backoff: float, rng: random.Random | None = None) -> float:
    """A wait drawn evenly from [backoff / 2, backoff] ("equal jitter"): at least half the back-off, so
    retries still slow down, and spread over the other half, so thousands of devices dropped by one
    broker restart do not reconnect in lockstep."""
    return (rng or random).uniform(backoff / 2, backoff)
