"""Jittered exponential backoff: the one place that decides how long to wait.

Full jitter (a uniform draw up to the current ceiling) keeps many services
that lost the same store or broker at once from retrying in lockstep.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``next()`` gives the next wait in seconds; ``reset()`` after a success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._ceiling = initial_s

    def next(self) -> float:
        wait = random.uniform(0.0, self._ceiling)
        self._ceiling = min(self._ceiling * 2.0, self.max_s)
        return wait

    def reset(self) -> None:
        self._ceiling = self.initial_s
