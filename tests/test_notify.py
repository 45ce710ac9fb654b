"""Notification channels: one change that cannot be announced loses no other."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from alarms.config import FireControl
from alarms.lifecycle import AlarmChange, ChangeKind
from alarms.system import Outcome
from notify.base import Notifications
from notify.channels import FireControlChannel, MqttStateChannel


def raised(sensor: str, site: str) -> AlarmChange:
    point: dict[str, Any] = {"alarm_id": f"{sensor}:hh", "sensor": sensor, "limit": "hh",
                             "kind": "combustible_lel", "site": site, "area": "tf-a",
                             "out_of_service": None, "raised_value": 55.0}
    return AlarmChange(ChangeKind.RAISED, 1_764_000_000_000, point["alarm_id"], "post-tf",
                       True, point)


def test_a_failed_fire_notice_loses_no_later_one(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if "broken-site" in topic:
            raise RuntimeError("this topic cannot be published")
        sent.append((topic, payload))

    fire = FireControl()
    notify = Notifications([FireControlChannel(publish, fire), MqttStateChannel(publish)])
    notify(Outcome(changes=[raised("LEL-1", "broken-site"), raised("LEL-2", "s1")]))

    fire_topic = fire.mqtt_topic.format(site="s1")
    assert [orjson.loads(p)["sensor"] for t, p in sent if t == fire_topic] == ["LEL-2"]
    # Likewise the retained states: the one that could be published was.
    assert [t for t, _ in sent if t.startswith("plantwatch/alarms/")] == [
        "plantwatch/alarms/s1/tf-a/LEL-2/hh"]
    assert "fire_control channel failed to announce" in caplog.text
