"""How many dead letters one topic may have published: a token bucket per topic.

Dead letters are for a person to see what a gateway sends wrong; they must
not turn a flood of bad input into a flood of letters. In the hostile-load
benchmark 100,000 bad messages made 304,000 letters, paho's thread could hand
the broker about 1,500 a second while the ingest loop kept the interpreter
busy, and 220,000 were refused at the client's backlog: which ones got through
was chance, so the one message that had crash-looped the service was among
the lost. Limiting per topic keeps a flooding gateway from crowding out the
others: a topic that sends a few bad messages has every one dead-lettered,
one that floods gets ``burst`` letters and then ``rate_per_s``, and what it
was not sent is counted (``plantwatch_dead_letters_dropped_total{why=
"rate_limit"}``) and summed up in one ``rate_limited`` letter per topic once
its bucket allows one again.

Pure logic with an explicit clock, so it is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TopicLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float
    suppressed: dict[str, int] = field(default_factory=dict)


class TopicLimiter:
    """A token bucket per topic, for at most ``max_topics`` topics at once.

    When the table is full it starts again (every topic gets a fresh burst),
    so junk on ever-new topics costs a bounded amount of memory; the bucket
    of a topic seen once holds one letter's worth of state.
    """

    def __init__(self, rate_per_s: float = 10.0, burst: float = 200.0,
                 max_topics: int = 4_096) -> None:
        if rate_per_s <= 0 or burst < 1 or max_topics < 1:
            raise ValueError(f"rate_per_s={rate_per_s} and max_topics={max_topics} must be "
                             f"positive and burst={burst} at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_topics = max_topics
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, topic: str, now_s: float) -> _Bucket:
        b = self._buckets.get(topic)
        if b is None:
            if len(self._buckets) >= self.max_topics:
                self._buckets.clear()
            b = self._buckets[topic] = _Bucket(self.burst, now_s)
        elif now_s > b.at_s:
            b.tokens = min(self.burst, b.tokens + (now_s - b.at_s) * self.rate_per_s)
            b.at_s = now_s
        return b

    def take(self, topic: str, reason: str, now_s: float) -> bool:
        """Whether a letter of ``topic`` may be published now; if not, it is noted by reason."""
        b = self._bucket(topic, now_s)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        b.suppressed[reason] = b.suppressed.get(reason, 0) + 1
        return False

    def summaries(self, now_s: float) -> list[tuple[str, dict[str, int]]]:
        """``(topic, suppressed by reason)`` of each topic whose bucket allows a letter
        again; the letter is taken from its bucket and its count starts again."""
        out: list[tuple[str, dict[str, int]]] = []
        for topic, b in self._buckets.items():
            if b.suppressed and self._bucket(topic, now_s).tokens >= 1.0:
                b.tokens -= 1.0
                out.append((topic, b.suppressed))
                b.suppressed = {}
        return out
