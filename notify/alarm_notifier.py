"""Announce what the alarm system changed: SSE stream, retained MQTT state, fire control, webhooks.

Notifications go out on state changes only (an :class:`~alarms.system.Outcome`
is exactly the changes of one commit):

* **SSE** (``/api/v1/alarms/stream``): every alarm change as an ``alarm``
  event (the point's current state plus ``change``, ``by``, ``reason``,
  ``annunciate``; ``action`` is ``raise``/``clear`` for raises and clears),
  ``risk`` events when an area's colour changes, ``hazard`` events, and
  ``flood`` events when a post's flood starts or ends.
* **MQTT**: the current state of each changed point, retained, QoS 1, on
  ``plantwatch/alarms/<site>/<area>/<sensor>/<condition>``, so a display that
  connects later gets every point's state from the broker at once. Risk
  colours likewise on ``plantwatch/risk/<site>/<area>``.
* **Fire control** (GB/T 50493 §5.1.2): second-level combustible gas alarms
  (by default) are also published, QoS 1, on the fire-control topic, and sent
  to webhooks whose ``fire_control`` flag is set (see :func:`webhook_targets`).
* **Webhooks**: annunciated alarm changes, risk changes and hazards, each to
  its own bounded queue (:mod:`notify.webhooks`); a dead receiver never
  holds up the pipeline.

Publishing never blocks: paho queues internally, the hub drops slow
subscribers, and webhooks have bounded queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from alarms.config import FireControl
from alarms.lifecycle import AlarmChange
from alarms.risk import AreaRisk
from alarms.system import Outcome
from notify.hub import EventHub
from notify.webhooks import WebhookNotifier, WebhookTarget
from plantwatch.settings import WebhookSettings

__all__ = ["AlarmNotifier", "alarm_event_data", "alarm_topic", "webhook_targets"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]


def webhook_targets(settings: list[WebhookSettings]) -> list[WebhookTarget]:
    """Webhook targets from settings, each filtering the event types it asked for."""

    def accepts_for(ws: WebhookSettings) -> Callable[[dict[str, Any]], bool]:
        wanted = set(ws.events)

        def accepts(event: dict[str, Any]) -> bool:
            kind = event.get("type")
            if kind == "fire_control":
                return ws.fire_control
            return not wanted or kind in wanted

        return accepts

    return [
        WebhookTarget(name=ws.name, url=ws.url, secret=ws.secret, timeout_s=ws.timeout_s,
                      max_attempts=ws.max_attempts, accepts=accepts_for(ws))
        for ws in settings
    ]


def alarm_topic(point: dict[str, Any]) -> str:
    return f"plantwatch/alarms/{point['site']}/{point['area']}/{point['sensor']}/{point['limit']}"


def alarm_event_data(change: AlarmChange) -> dict[str, Any]:
    """The SSE/webhook body of one alarm change: the point now, and what happened."""
    point = change.point or {}
    action = {"raised": "raise", "cleared": "clear"}.get(change.change, change.change)
    value = point.get("cleared_value") if change.change == "cleared" else point.get(
        "raised_value")
    return {
        **point,
        "type": "alarm",
        "change": change.change,
        "action": action,
        "ts": change.ts,
        "value": value,
        "by": change.by,
        "reason": change.reason,
        "annunciate": change.annunciate,
        "detail": change.detail,
    }


class AlarmNotifier:
    """Fans one commit's outcome out to every notification channel."""

    def __init__(
        self,
        hub: EventHub,
        publish: Publish | None = None,
        webhooks: WebhookNotifier | None = None,
        fire_control: FireControl | None = None,
        area_site: dict[str, str] | None = None,
    ) -> None:
        self.hub = hub
        self.area_site = area_site or {}
        self.publish = publish
        self.webhooks = webhooks
        self.fire_control = fire_control or FireControl()

    def __call__(self, outcome: Outcome) -> None:
        for change in outcome.changes:
            try:
                self._change(change)
            except Exception:  # a notifier bug must never stop the pipeline
                log.exception("announcing %s of %s failed", change.change, change.alarm_id)
        try:
            for area in outcome.risk:
                self._risk(area)
            for hazard in outcome.hazards:
                data = {"type": "hazard", **hazard.to_dict(hazard.updated_ts)}
                self.hub.publish("hazard", data)
                if self.webhooks is not None:
                    self.webhooks.notify(data)
        except Exception:  # a notifier bug must never stop the pipeline
            log.exception("announcing risk or hazard changes failed")

    def _change(self, change: AlarmChange) -> None:
        if change.point is None:
            data = {"type": "flood" if change.change.startswith("flood") else "alarm_system",
                    **change.to_dict()}
            self.hub.publish("flood" if data["type"] == "flood" else "system", data)
            if self.webhooks is not None:
                self.webhooks.notify(data)
            return
        data = alarm_event_data(change)
        self.hub.publish("alarm", data)
        if self.publish is not None:
            self.publish(alarm_topic(change.point), orjson.dumps(change.point), 1, True)
        if change.annunciate and self.webhooks is not None:
            self.webhooks.notify(data)
        # Out of service means maintenance (a bump test, a recalibration): that
        # must not call the fire brigade. Shelved or suppressed alarms still go.
        if (change.change in ("raised", "cleared", "realarm") and self._is_fire(change.point)
                and change.point.get("out_of_service") is None):
            fire = {**data, "type": "fire_control"}
            if self.publish is not None:
                topic = self.fire_control.mqtt_topic.format(site=change.point["site"])
                self.publish(topic, orjson.dumps(fire), 1, False)
            if self.webhooks is not None:
                self.webhooks.notify(fire)  # only targets flagged fire_control accept it

    def _is_fire(self, point: dict[str, Any]) -> bool:
        fc = self.fire_control
        return point["kind"] in fc.kinds and point["limit"] in fc.limits

    def _risk(self, area: AreaRisk) -> None:
        site = self.area_site.get(area.area, "plant")
        data = {"type": "risk", "site": site, **area.to_dict()}
        self.hub.publish("risk", data)
        if self.publish is not None:
            self.publish(f"plantwatch/risk/{site}/{area.area}", orjson.dumps(data), 1, True)
        if self.webhooks is not None:
            self.webhooks.notify(data)
