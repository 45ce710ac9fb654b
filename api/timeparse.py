"""Parse the API's time and duration query parameters into integer milliseconds.

Every time a client sends is turned into an ``int`` (ms since the epoch, UTC)
here, at the edge, before it goes anywhere near a store query. Anything that
is not exactly one of the accepted forms is rejected with a
:class:`TimeParamError` naming the parameter and the offending value.

Accepted times::

    1714557600000                 epoch milliseconds
    2024-05-01T10:00:00Z          ISO-8601 with Z or an offset (+08:00)
    now                           the request's clock
    -15m, now-1h                  relative to now (units ms, s, m, h, d)

Naive ISO times (no Z, no offset) are refused rather than guessed: a plant
runs on local time and its database on UTC, and an eight-hour guess is worse
than an error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = [
    "DURATION_UNITS_MS",
    "MAX_EPOCH_MS",
    "TimeParamError",
    "parse_duration_ms",
    "parse_time_ms",
]

DURATION_UNITS_MS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
# 9999-12-31T23:59:59.999Z, the last instant Python's datetime can name.
MAX_EPOCH_MS = 253_402_300_799_999

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_DURATION = re.compile(r"(\d{1,12})(ms|s|m|h|d)", re.ASCII)
_EPOCH_MS = re.compile(r"\d{1,15}", re.ASCII)
_RELATIVE = re.compile(r"(?:now)?-(\d{1,12})(ms|s|m|h|d)", re.ASCII)
# Only the characters an ISO-8601 timestamp can contain; fromisoformat does the rest.
_ISO_CHARS = re.compile(r"\d{4}-[0-9T:.,+\-Z ]{2,36}", re.ASCII)
# An unencoded "+08:00" in a query string arrives as " 08:00" (form decoding
# turns + into a space); a space then HH:MM after the time can only mean that.
_PLUS_AS_SPACE = re.compile(
    r"(\d{4}-.*\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}:?\d{2})", re.ASCII
)
_MAX_SHOWN = 80


class TimeParamError(ValueError):
    """A time or duration parameter is malformed; carries the parameter and value."""

    def __init__(self, param: str, value: str, problem: str) -> None:
        self.param = param
        self.value = value
        self.problem = problem
        super().__init__(f"{param}: {_shown(value)} {problem}")


def _shown(value: str) -> str:
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    return repr(value)


def parse_duration_ms(value: str, *, param: str = "every", min_ms: int = 1) -> int:
    """``"30s"`` → 30000. Units ms, s, m, h, d; a whole number, nothing else."""
    match = _DURATION.fullmatch(value)
    if match is None:
        raise TimeParamError(param, value, "is not a duration like 500ms, 30s, 5m, 1h or 1d")
    ms = int(match[1]) * DURATION_UNITS_MS[match[2]]
    if ms < min_ms:
        raise TimeParamError(param, value, f"is shorter than the minimum of {min_ms} ms")
    if ms > MAX_EPOCH_MS:
        raise TimeParamError(param, value, "is longer than any time the API can name")
    return ms


def parse_time_ms(value: str, *, now_ms: int, param: str) -> int:
    """A time in any accepted form (see the module docstring) → epoch ms, UTC."""
    if value == "now":
        return now_ms
    if _EPOCH_MS.fullmatch(value):
        ms = int(value)
        if ms > MAX_EPOCH_MS:
            raise TimeParamError(param, value, "is past the year 9999 in epoch milliseconds")
        return ms
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        ms = now_ms - int(relative[1]) * DURATION_UNITS_MS[relative[2]]
        if ms < 0:
            raise TimeParamError(param, value, "reaches back before 1970-01-01")
        return ms
    if _ISO_CHARS.fullmatch(value):
        plus_lost = _PLUS_AS_SPACE.fullmatch(value)
        iso = f"{plus_lost[1]}+{plus_lost[2]}" if plus_lost else value
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                raise TimeParamError(
                    param,
                    value,
                    "has no time zone; add Z for UTC or an offset such as +08:00",
                )
            ms = (moment - _EPOCH) // _ONE_MS
            if not 0 <= ms <= MAX_EPOCH_MS:
                raise TimeParamError(param, value, "is outside 1970–9999")
            return ms
    raise TimeParamError(
        param,
        value,
        "is not a time: use ISO-8601 with a zone (2024-05-01T10:00:00Z), "
        "epoch milliseconds, 'now', or a relative time like -1h",
    )
