"""Alarm floods per post (operator position), EEMUA 191 / ISA-18.2.

A flood starts when a post receives more than ``start_above`` alarms within
``window_ms`` (default: more than 10 in 10 minutes) and ends when the count in
the trailing window falls below ``end_below`` (default 5). The end time is
exact, not the time somebody looked: the count falls when the oldest alarm
leaves the window, at its time plus the window. That makes the flood history
a pure function of the alarm times, whenever :meth:`FloodTracker.advance` is
called, which is what lets the alarm state be rebuilt from the journal.

Counted: alarms and faults that would be annunciated (not shelved,
suppressed or out of service), including the ones the flood itself holds
back (they are load the post carried). Warnings are advisory and not counted.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from alarms.history import FloodInterval

__all__ = ["FloodPolicy", "FloodTracker"]


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    start_above: int = 10
    end_below: int = 5
    window_ms: int = 600_000


class FloodTracker:
    """Flood state of every post, and the history of floods."""

    def __init__(self, policy: FloodPolicy = FloodPolicy()) -> None:
        self.policy = policy
        self._window: dict[str, deque[int]] = {}
        self._open: dict[str, FloodInterval] = {}
        self.history: list[FloodInterval] = []

    def flooding(self, post: str) -> FloodInterval | None:
        return self._open.get(post)

    def open_floods(self) -> list[FloodInterval]:
        return sorted(self._open.values(), key=lambda f: (f.start_ts, f.post))

    def count(self, post: str) -> int:
        window = self._window.get(post)
        return len(window) if window else 0

    def advance(self, now_ts: int) -> list[FloodInterval]:
        """Let alarms older than the window leave it; return floods that ended."""
        ended: list[FloodInterval] = []
        w = self.policy.window_ms
        for post, window in self._window.items():
            while window and window[0] + w <= now_ts:
                left = window.popleft()
                flood = self._open.get(post)
                if flood is not None and len(window) < self.policy.end_below:
                    flood.end_ts = left + w
                    del self._open[post]
                    ended.append(flood)
        return sorted(ended, key=lambda f: (f.end_ts or 0, f.post))

    def add(self, post: str, ts: int) -> FloodInterval | None:
        """Count one alarm of ``post`` at ``ts``; return the flood if this one started it.

        Call :meth:`advance` first (the manager does, for every record), so
        floods that ended before ``ts`` are reported before this one counts.
        """
        window = self._window.setdefault(post, deque())
        if window and ts < window[-1]:
            # Late arrival (event time): keep the window sorted.
            items = list(window)
            bisect.insort(items, ts)
            window.clear()
            window.extend(items)
        else:
            window.append(ts)
        if post not in self._open and len(window) > self.policy.start_above:
            flood = FloodInterval(post=post, start_ts=ts)
            self._open[post] = flood
            self.history.append(flood)
            return flood
        return None
