"""The alarm event stream (``text/event-stream``) over the :class:`~notify.hub.EventHub`.

A client gets, in order: a ``retry`` hint and a ``snapshot`` event with the
active alarms, then every hub event as ``event: <name>`` / ``data: <json>``,
with a ``: keepalive`` comment whenever the stream has been idle for
``keepalive_s``. If the client is too slow, it receives ``overflow`` and the
stream ends; the browser's EventSource reconnects and starts over from a fresh
snapshot, so nothing is silently missed.

Subscribing happens before the snapshot is taken: an event published in
between reaches the client twice at worst (once in the snapshot, once as an
event), never not at all. Applying an alarm event is idempotent, so that is
harmless.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from alarms.points import AlarmPoint
from notify.hub import EventHub

__all__ = [
    "KEEPALIVE",
    "RETRY_MS",
    "SNAPSHOT_EVENT",
    "EventStreamResponse",
    "alarm_stream",
    "format_event",
]

KEEPALIVE: Final = b": keepalive\n\n"
SNAPSHOT_EVENT: Final = "snapshot"
RETRY_MS: Final = 3000


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity; a browser's JSON.parse would reject the whole event."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def format_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE message: ``event: <name>\\ndata: <json>\\n\\n`` (JSON on one line)."""
    if "\n" in event or "\r" in event:
        raise ValueError(f"SSE event name {event!r} must be a single line")
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False, default=str)
    return f"event: {event}\ndata: {text}\n\n".encode()


async def alarm_stream(
    hub: EventHub,
    standing: Callable[[], list[AlarmPoint]],
    *,
    keepalive_s: float = 15.0,
    clock_ms: Callable[[], int] | None = None,
    accept: Callable[[str, dict[str, Any]], bool] | None = None,
    still_valid: Callable[[], bool] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The bytes of one client's event stream; ends on overflow or hub close.

    ``accept(event, data)`` false leaves an event out (the client's token does
    not cover it); ``standing`` should be filtered the same way. ``overflow``
    always goes through: it ends the stream.

    ``still_valid()`` is asked before each event and keep-alive; false ends
    the stream there (the client's token was revoked, expired or rotated
    away: a stream opened with it must not outlive it). The client's
    reconnect then meets the 401 that says why.
    """
    async with hub.subscribe() as subscription:
        snapshot: dict[str, Any] = {"alarms": [a.to_dict() for a in standing()]}
        if clock_ms is not None:
            snapshot["ts"] = clock_ms()
        yield f"retry: {RETRY_MS}\n".encode() + format_event(SNAPSHOT_EVENT, snapshot)
        events = aiter(subscription)
        while True:
            try:
                # Only the wait sits under the timeout; never a yield (PEP 789).
                async with asyncio.timeout(keepalive_s):
                    event, data = await anext(events)
            except TimeoutError:
                if still_valid is not None and not still_valid():
                    return
                yield KEEPALIVE
                continue
            except StopAsyncIteration:
                return
            if still_valid is not None and not still_valid():
                return
            if accept is not None and event != "overflow" and not accept(event, data):
                continue
            yield format_event(event, data)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that always closes its generator.

    Whether the client went away (the server cancels us, or ``send`` fails),
    the stream ended, or the app is shutting down, the generator is closed
    here, so its hub subscription is released at once rather than whenever
    the garbage collector gets to it.
    """

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncGenerator[bytes, None], status_code: int = 200) -> None:
        super().__init__(
            stream,
            status_code=status_code,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.aclose()
