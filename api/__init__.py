"""The HTTP API: REST, the alarm event stream (SSE), health, metrics and the dashboard.

Build an app with :func:`create_app` from an :class:`ApiServices`; feed live
events to browsers through the :class:`EventHub` in it.
"""

from api.app import ApiServices, create_app
from api.sse import alarm_stream, format_event
from api.timeparse import TimeParamError, parse_duration_ms, parse_time_ms
from notify.hub import EventHub, HubSubscription

__all__ = [
    "ApiServices",
    "EventHub",
    "HubSubscription",
    "TimeParamError",
    "alarm_stream",
    "create_app",
    "format_event",
    "parse_duration_ms",
    "parse_time_ms",
]
