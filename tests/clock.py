"""The shared time origin of tests whose times only matter relative to one another.

A test that needs a particular instant (midnight, a time relative to now for a
server's retention policy) keeps its own ``T0`` and says why next to it.
"""

from __future__ import annotations

# 2025-11-24 16:00 UTC in ms since the epoch: a real magnitude, so int64 and
# float(ts) behave as with live readings. No test may rely on its date or time of day.
T0 = 1_764_000_000_000
