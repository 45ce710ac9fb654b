"""What one engine step produced, for the runner to carry out.

The engine decides; the runner (the live pipeline, a backtest, a replay)
does the I/O: it stores ``readings``, checkpoints when ``state_moved``,
announces ``outcome``, publishes ``dead_letters`` (under its own rate limit)
and ``publish``, and only then acknowledges the input. The alarm journal is
the exception: the engine's :class:`~alarms.system.AlarmSystem` appends (and
fsyncs) the records before the step returns, because alarm state must never
run ahead of its journal; ``records`` says what was kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alarms.records import Record
from alarms.system import Outcome
from decoders.sparkplug_host import HostMessage
from model.batch import ReadingBatch

__all__ = ["DeadLetter", "Step"]

_NO_READINGS = ReadingBatch.empty()
"""Shared by every step without readings (a batch's arrays are never written to)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message or reading, and the letter that says why (built on demand:
    the runner may rate-limit letters, and a letter not sent costs nothing)."""

    topic: str
    """The input's topic ('' when the refusal concerns no one topic); the rate-limit key."""
    reason: str
    per_reading: bool
    """True when one reading was refused, False for a whole message."""
    letter: Callable[[], dict[str, Any]]


@dataclass(slots=True)
class Step:
    """One step's results. Empty when nothing happened."""

    readings: ReadingBatch = _NO_READINGS
    """To store: the live readings (as received, unclipped) and any backfill."""
    outcome: Outcome = field(default_factory=Outcome)
    """Alarm changes, condition events, hazards and risk colours, to announce."""
    records: list[Record] = field(default_factory=list)
    """The alarm records journaled in this step."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    refused: dict[tuple[str, bool], int] = field(default_factory=dict)
    """Every refusal by (reason, per reading), letters or not (a message's letters stop
    at ``MAX_DEAD_LETTERS_PER_MESSAGE``; the counts do not)."""
    publish: list[HostMessage] = field(default_factory=list)
    """Messages the decoders want sent to gateways (Sparkplug rebirth requests)."""
    state_moved: bool = False
    """Detector or alarm state changed: checkpoint before acknowledging."""
    internal_errors: int = 0
    """Inputs that met a bug of ours (each also has an ``internal_error`` dead letter)."""
