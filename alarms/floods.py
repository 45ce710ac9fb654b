"""Alarm floods per post (operator position), EEMUA 191 / ISA-18.2.

A flood starts when a post receives more than ``start_above`` alarms within
``window_ms`` (default: more than 10 in 10 minutes) and ends when the count in
the trailing window falls below ``end_below`` (default 5). The end time is
exact, not the time somebody looked: the count falls when an alarm leaves the
window, at its time plus the window.

Flood state must be a pure function of the journaled records, whatever the
clock did in between (ticks that change nothing are not journaled, and
readings arrive a little late in event time). So the window is never trimmed
by the clock: counts are taken over the alarm times known so far
(``(t - window, t]``), and the end of a flood is the first window-leaving
time at which the count fell below ``end_below``. Old times are pruned only
when an alarm is added, which is itself journaled.

Counted: alarms and faults that would be annunciated (not shelved,
suppressed or out of service), including the ones the flood itself holds
back (they are load the post carried). Warnings are advisory and not counted.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alarms.history import FloodInterval
from alarms.state_codec import decode, encode

__all__ = ["FloodPolicy", "FloodTracker"]


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    start_above: int = 10
    end_below: int = 5
    window_ms: int = 600_000
    # Alarm times older than this before the newest are forgotten: late
    # readings further back than that are counted without them.
    keep_ms: int = 3_600_000


@dataclass(slots=True)
class _Post:
    times: list[int] = field(default_factory=list)  # sorted alarm times
    flood: FloodInterval | None = None
    # Leave times up to here were checked and kept the count up. Adding an
    # alarm only raises counts, so they never need checking again (speed
    # only: the answer is the same with or without it).
    checked_to: int = 0


class FloodTracker:
    """Flood state of every post, and the history of floods."""

    def __init__(self, policy: FloodPolicy | None = None) -> None:
        self.policy = policy or FloodPolicy()
        self._posts: dict[str, _Post] = {}
        self.history: list[FloodInterval] = []

    def flooding(self, post: str) -> FloodInterval | None:
        state = self._posts.get(post)
        return state.flood if state else None

    def open_floods(self) -> list[FloodInterval]:
        return sorted((s.flood for s in self._posts.values() if s.flood is not None),
                      key=lambda f: (f.start_ts, f.post))

    def count(self, post: str, at_ts: int) -> int:
        """Alarms of ``post`` in the window ending at ``at_ts``: ``(at_ts - window, at_ts]``."""
        state = self._posts.get(post)
        if state is None:
            return 0
        times = state.times
        return bisect.bisect_right(times, at_ts) - bisect.bisect_right(
            times, at_ts - self.policy.window_ms)

    def advance(self, now_ts: int) -> list[FloodInterval]:
        """Return the floods that ended by ``now_ts`` (with their exact end time)."""
        ended: list[FloodInterval] = []
        w = self.policy.window_ms
        for state in self._posts.values():
            flood = state.flood
            if flood is None:
                continue
            times = state.times
            # The count can only fall when an alarm leaves the window.
            since = max(flood.start_ts, state.checked_to)
            first = bisect.bisect_right(times, since - w)
            for i in range(first, len(times)):
                leave = times[i] + w
                if leave > now_ts:
                    break
                if leave <= since:
                    continue
                if self._count_in(times, leave) < self.policy.end_below:
                    flood.end_ts = leave
                    state.flood = None
                    ended.append(flood)
                    break
                state.checked_to = leave
        return sorted(ended, key=lambda f: (f.end_ts or 0, f.post))

    def state(self, keep_from_ts: int | None = None) -> dict[str, Any]:
        """JSON-ready state for a journal compaction snapshot: every post's alarm
        times and open flood, and the flood history that ended at or after
        ``keep_from_ts`` (all of it if None)."""
        open_floods = {id(s.flood) for s in self._posts.values() if s.flood is not None}
        kept = [f for f in self.history
                if keep_from_ts is None or f.end_ts is None or f.end_ts >= keep_from_ts
                or id(f) in open_floods]
        index = {id(f): i for i, f in enumerate(kept)}
        return {
            "history": [encode(f) for f in kept],
            "posts": {post: {"times": list(s.times), "checked_to": s.checked_to,
                             "flood": None if s.flood is None else index[id(s.flood)]}
                      for post, s in self._posts.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the state of :meth:`state` (an open flood is the same object in the
        history and in its post, as it was)."""
        self.history = [decode(FloodInterval, f) for f in state["history"]]
        self._posts = {
            post: _Post(times=[int(t) for t in s["times"]], checked_to=int(s["checked_to"]),
                        flood=None if s["flood"] is None else self.history[int(s["flood"])])
            for post, s in state["posts"].items()
        }

    def _count_in(self, times: list[int], at_ts: int) -> int:
        return bisect.bisect_right(times, at_ts) - bisect.bisect_right(
            times, at_ts - self.policy.window_ms)

    def add(self, post: str, ts: int) -> FloodInterval | None:
        """Count one alarm of ``post`` at ``ts``; return the flood if this one started it.

        Call :meth:`advance` first (the manager does, for every record), so
        floods that ended before ``ts`` are reported before this one counts.
        """
        state = self._posts.setdefault(post, _Post())
        times = state.times
        bisect.insort(times, ts)
        horizon = times[-1] - self.policy.keep_ms
        if state.flood is not None:
            # Never forget the alarms of an open flood: its end is judged on them.
            horizon = min(horizon, state.flood.start_ts - self.policy.window_ms)
        if times[0] < horizon:
            del times[:bisect.bisect_left(times, horizon)]
        if state.flood is None and self._count_in(times, ts) > self.policy.start_above:
            flood = FloodInterval(post=post, start_ts=ts)
            state.flood = flood
            state.checked_to = 0
            self.history.append(flood)
            return flood
        return None
