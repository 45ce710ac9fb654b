"""One protocol for every notification channel, and the fan-out over them.

A channel is told each commit's :class:`~alarms.system.Outcome` (exactly the
changes of one journal commit: alarm changes, risk colours, hazards) and
announces what it cares about. Channels never block the pipeline: the hub
drops slow subscribers, paho queues internally, webhooks have bounded queues.
Adding a channel is one class meeting :class:`Notifier` and one entry where
the service builds its channels (:meth:`plantwatch.service.Service`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from alarms.system import Outcome

__all__ = ["Notifications", "Notifier", "each"]

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """A notification channel."""

    name: str

    def notify(self, outcome: Outcome) -> None:
        """Announce what ``outcome`` changed. May raise: :class:`Notifications`
        isolates channels from each other and from the pipeline."""


T = TypeVar("T")


def each(channel: str, items: Iterable[T], announce: Callable[[T], None]) -> None:
    """Announce every item, each on its own: one that fails is logged and the rest
    still go (a later fire-control notice of the same commit must not be lost
    because an earlier change could not be announced)."""
    for item in items:
        try:
            announce(item)
        except Exception:  # a notifier bug must never stop the pipeline
            log.exception("the %s channel failed to announce %r", channel, item)


class Notifications:
    """Every channel, each told every outcome; one channel's failure is logged and
    neither stops the others nor the pipeline."""

    def __init__(self, channels: Sequence[Notifier]) -> None:
        self.channels = list(channels)

    def __call__(self, outcome: Outcome) -> None:
        for channel in self.channels:
            try:
                channel.notify(outcome)
            except Exception:  # a notifier bug must never stop the pipeline
                log.exception("the %s channel failed to announce an outcome", channel.name)
