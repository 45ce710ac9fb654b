"""The notification channels: SSE, retained MQTT states, fire control, webhooks.

* :class:`SseChannel` — every change to the dashboard's event stream
  (``/api/v1/alarms/stream``): ``alarm``, ``risk``, ``hazard``, ``flood`` and
  ``system`` events;
* :class:`MqttStateChannel` — the current state of each changed point,
  retained, QoS 1, on ``plantwatch/alarms/<site>/<area>/<sensor>/<condition>``,
  so a display that connects later gets every point's state at once; risk
  colours likewise on ``plantwatch/risk/<site>/<area>``;
* :class:`FireControlChannel` — fire-control notices, QoS 1, on the
  fire-control topic of the site;
* :class:`WebhookChannel` — annunciated alarm changes, floods, risk changes,
  hazards and fire-control notices to the webhook targets (each filters what
  it asked for; only targets flagged ``fire_control`` take fire notices).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import orjson

from alarms.config import FireControl
from alarms.lifecycle import AlarmChange
from alarms.risk import AreaRisk
from alarms.system import Outcome
from notify.base import each
from notify.hub import EventHub
from notify.messages import (
    alarm_event_data,
    alarm_topic,
    fire_event,
    hazard_data,
    risk_data,
    system_data,
)
from notify.outbox import Delivery, Outbox
from notify.webhooks import WebhookNotifier

__all__ = ["FireControlChannel", "MqttStateChannel", "Publish", "SseChannel", "WebhookChannel",
           "outbox_publish"]

Publish = Callable[[str, bytes, int, bool], None]
"""``publish(topic, payload, qos, retain)`` on the plant's broker."""


def outbox_publish(outbox: Outbox, clock: Callable[[], float] = time.time,
                   lane: str = "mqtt") -> Publish:
    """A :data:`Publish` that records each message in the outbox's ``lane``.

    The service gives this to :class:`MqttStateChannel` (lane ``mqtt``) and
    :class:`FireControlChannel` (lane ``mqtt:fire``, so a fire notice never
    waits behind a flood of retained states), so both reach the broker at
    least once, even across a crash.
    """

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        kind = topic.split("/", 2)[1] if topic.count("/") >= 1 else "mqtt"
        outbox.add(Delivery.make(lane, kind, payload, int(clock() * 1000), topic=topic,
                                 qos=qos, retain=retain))

    return publish


class _Sites:
    def __init__(self, area_site: Mapping[str, str] | None) -> None:
        self._area_site = dict(area_site or {})

    def site(self, area: str) -> str:
        return self._area_site.get(area, "plant")


class SseChannel(_Sites):
    """Every change to the server-sent event hub."""

    name = "sse"

    def __init__(self, hub: EventHub, area_site: Mapping[str, str] | None = None) -> None:
        super().__init__(area_site)
        self.hub = hub

    def notify(self, outcome: Outcome) -> None:
        each(self.name, outcome.changes, self._change)
        each(self.name, outcome.risk,
             lambda area: self.hub.publish("risk", risk_data(area, self.site(area.area),
                                                             outcome.ts)))
        each(self.name, outcome.hazards,
             lambda hazard: self.hub.publish("hazard", hazard_data(hazard)))

    def _change(self, change: AlarmChange) -> None:
        if change.point is None:
            data = system_data(change)
            self.hub.publish("flood" if data["type"] == "flood" else "system", data)
        else:
            self.hub.publish("alarm", alarm_event_data(change))


class MqttStateChannel(_Sites):
    """Retained point states and risk colours on the broker."""

    name = "mqtt_state"

    def __init__(self, publish: Publish, area_site: Mapping[str, str] | None = None) -> None:
        super().__init__(area_site)
        self.publish = publish

    def notify(self, outcome: Outcome) -> None:
        each(self.name, [c.point for c in outcome.changes if c.point is not None],
             lambda point: self.publish(alarm_topic(point), orjson.dumps(point), 1, True))
        each(self.name, outcome.risk, lambda area: self._risk(area, outcome.ts))

    def _risk(self, area: AreaRisk, ts: int | None) -> None:
        site = self.site(area.area)
        self.publish(f"plantwatch/risk/{site}/{area.area}",
                     orjson.dumps(risk_data(area, site, ts)), 1, True)


class FireControlChannel:
    """Fire-control notices on the site's fire-control topic."""

    name = "fire_control"

    def __init__(self, publish: Publish, fire_control: FireControl) -> None:
        self.publish = publish
        self.fire_control = fire_control

    def notify(self, outcome: Outcome) -> None:
        each(self.name, outcome.changes, self._change)

    def _change(self, change: AlarmChange) -> None:
        fire = fire_event(change, self.fire_control)
        if fire is not None:
            topic = self.fire_control.mqtt_topic.format(site=fire["site"])
            self.publish(topic, orjson.dumps(fire), 1, False)


class WebhookChannel(_Sites):
    """Webhooks: what operators must hear (annunciated changes), risk, hazards, fire."""

    name = "webhooks"

    def __init__(self, webhooks: WebhookNotifier, fire_control: FireControl,
                 area_site: Mapping[str, str] | None = None) -> None:
        super().__init__(area_site)
        self.webhooks = webhooks
        self.fire_control = fire_control

    def notify(self, outcome: Outcome) -> None:
        each(self.name, outcome.changes, self._change)
        each(self.name, outcome.risk,
             lambda area: self.webhooks.notify(risk_data(area, self.site(area.area),
                                                         outcome.ts)))
        each(self.name, outcome.hazards,
             lambda hazard: self.webhooks.notify(hazard_data(hazard)))

    def _change(self, change: AlarmChange) -> None:
        if change.point is None:
            self.webhooks.notify(system_data(change))
            return
        if change.annunciate:
            self.webhooks.notify(alarm_event_data(change))
        fire = fire_event(change, self.fire_control)
        if fire is not None:
            self.webhooks.notify(fire)  # only targets flagged fire_control accept it
