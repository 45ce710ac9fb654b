"""Dead letters that can always be written, whatever the input held.

A dead letter echoes what was refused (a reading, the head of a payload, the
topic) so an engineer can see what the gateway sent. The echo is the input,
and the input may be hostile: a reading nested 1,000 lists deep made
``orjson.dumps`` refuse the letter and the ``repr()`` fallback raise
``RecursionError`` out of the ingest loop, which crash-looped the service on
the broker's redelivery. So every letter is cut to a bounded shape before it is
serialised (:func:`bounded`), and :func:`encode` never raises: when even the
bounded letter cannot be written, a minimal letter naming the failure is.

The bounds are small on purpose: a letter is for a person to read, and the
payload's first KiB (``payload_head``) is there for the rest.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_LETTER_BYTES", "MAX_TEXT", "bounded", "encode"]

MAX_DEPTH = 4
"""Containers deeper than this in an echoed value are replaced by a note."""
MAX_ITEMS = 32
"""At most this many items of one echoed list or object are kept."""
MAX_TEXT = 1024
"""Echoed strings (and object keys) are cut to this many characters."""
MAX_LETTER_BYTES = 16_384
"""A serialised letter above this is replaced by its reason, detail and topic."""

_SCALARS = (bool, int, float, type(None))


def _text(s: str) -> str:
    if len(s) > MAX_TEXT:
        s = f"{s[:MAX_TEXT]}…(+{len(s) - MAX_TEXT} chars)"
    if not s.isascii():
        # A lone surrogate (JSON "\ud800", read by the stdlib parser) is not
        # UTF-8 and orjson refuses it: it is echoed escaped instead.
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-safe data no deeper than ``MAX_DEPTH``, with cut lists and strings.

    Recursion is bounded by ``MAX_DEPTH``, so no input can exhaust the stack.
    Non-finite floats, huge integers and other types become their short text.
    """
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value[:MAX_TEXT]).decode("utf-8", errors="replace"))
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            return f"<{type(value).__name__} nested deeper than {MAX_DEPTH}: not echoed>"
        if isinstance(value, dict):
            items = list(itertools.islice(value.items(), MAX_ITEMS))
            out: dict[str, Any] = {_text(str(k)): bounded(v, depth + 1) for k, v in items}
            if len(value) > MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more keys not echoed"
            return out
        kept = [bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"… {len(value) - MAX_ITEMS} more items not echoed")
        return kept
    return f"<{type(value).__name__}>"


def encode(letter: dict[str, Any]) -> bytes:
    """The letter as JSON bytes, bounded (see :func:`bounded`); never raises.

    The letter's own fields (reason, detail, topic …) are ours, but the topic,
    detail and echoed reading carry input, so the whole letter is bounded.
    """
    try:
        body = orjson.dumps({str(k): bounded(v, 1) for k, v in letter.items()})
        if len(body) <= MAX_LETTER_BYTES:
            return body
        return orjson.dumps({
            "topic": bounded(letter.get("topic"), 1), "reason": str(letter.get("reason")),
            "detail": bounded(letter.get("detail"), 1),
            "received_ms": letter.get("received_ms") if type(letter.get("received_ms")) is int
            else None,
            "note": f"letter of {len(body)} bytes cut to its reason (limit {MAX_LETTER_BYTES})",
        })
    except Exception as exc:  # the last line of defence: a letter is always written
        return orjson.dumps({
            "reason": "internal_error",
            "detail": f"a dead letter could not be serialised ({type(exc).__name__})",
        })
