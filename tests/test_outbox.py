"""The durable outbox: what is synced survives a restart, in order, once."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from notify.delivery import DeliveryError, OutboxDispatcher
from notify.outbox import Delivery, Outbox
from store.backoff import Backoff


def delivery(seq: int, lane: str = "webhook:ops", ms: int = 1_000) -> Delivery:
    return Delivery.make(lane, "alarm", f'{{"seq":{seq}}}'.encode(), ms + seq)


def test_synced_deliveries_survive_a_restart_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    for seq in range(5):
        box.add(delivery(seq))
    box.add(delivery(9, lane="mqtt"))
    assert box.depth() == 0  # staged, not recorded: nothing to deliver yet
    assert box.sync() == 6
    box.settle(box.head("webhook:ops"), "delivered")  # type: ignore[arg-type]
    box.close()

    again = Outbox(path)
    assert [d.body for d in again.pending("webhook:ops")] == [
        f'{{"seq":{s}}}'.encode() for s in range(1, 5)]
    assert again.depth("mqtt") == 1
    assert again.oldest_ms() == 1_001
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_staged_but_not_synced_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.add(delivery(1))
    box.close()  # a crash before sync: the journal is cut back and it is produced again
    assert Outbox(path).depth() == 0


def test_a_notification_produced_again_keeps_its_id_and_every_one_is_kept(
        tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.jsonl")
    box.add(delivery(1))
    box.sync()
    box.add(delivery(1))  # redelivered readings made the same record again
    box.sync()
    # Both go: the receiver drops the repeat by its id.
    assert [d.id for d in box.pending()] == [delivery(1).id] * 2
    assert delivery(1).id == delivery(1).id != delivery(2).id
    assert delivery(1).id != delivery(1, lane="webhook:other").id


def test_a_state_that_returns_is_sent_again_after_the_one_between(tmp_path: Path) -> None:
    """Shelve then unshelve: the retained state goes S0, S1, S0. All three are kept,
    in order, while the broker is away, so it ends at S0 (the truth), not S1."""
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    s0, s1 = b'{"state":"unack","shelved":null}', b'{"state":"unack","shelved":{"by":"li"}}'
    for body in (s0, s1, s0):
        box.add(Delivery.make("mqtt", "alarms", body, 5, topic="plantwatch/alarms/a",
                              retain=True))
        box.sync()
    box.close()
    again = Outbox(path)
    assert [d.body for d in again.pending("mqtt")] == [s0, s1, s0]
    first = again.head("mqtt")
    assert first is not None
    again.settle(first, "delivered")
    again.close()
    assert [d.body for d in Outbox(path).pending("mqtt")] == [s1, s0]  # the right one left


def test_a_torn_last_line_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.add(delivery(1))
    box.sync()
    box.close()
    with open(path, "ab") as f:
        f.write(b'{"add":"x","lane":"webhook:ops","ki')
    again = Outbox(path)
    assert again.depth() == 1
    assert again.torn_lines_dropped == 1
    assert path.read_bytes().endswith(b"}\n")


def test_an_unreadable_line_is_skipped_and_counted_not_a_refusal_to_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.add(delivery(1))
    box.sync()
    box.close()
    with open(path, "ab") as f:
        f.write(b'{"neither":1}\n')
    box = Outbox(path)
    box.add(delivery(2))
    box.sync()
    box.close()
    again = Outbox(path)
    assert [d.body for d in again.pending()] == [b'{"seq":1}', b'{"seq":2}']
    assert again.unreadable_lines == 1
    assert "byte" in caplog.text and "not an outbox record" in caplog.text


def test_the_file_is_rewritten_with_only_the_pending(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path, rewrite_bytes=2_000)
    for seq in range(100):
        box.add(delivery(seq))
    box.sync()
    for _ in range(97):
        box.settle(box.head("webhook:ops"), "delivered")  # type: ignore[arg-type]
    assert path.stat().st_size < 2_000  # rewritten along the way
    box.close()
    again = Outbox(path)
    assert [d.body for d in again.pending()] == [f'{{"seq":{s}}}'.encode() for s in (97, 98, 99)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_mqtt_deliveries_keep_topic_qos_and_retain(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.add(Delivery.make("mqtt", "state", b'{"state":"unack"}', 5, topic="plantwatch/alarms/a",
                          qos=1, retain=True))
    box.sync()
    box.close()
    [d] = Outbox(path).pending()
    assert (d.topic, d.qos, d.retain, d.body) == ("plantwatch/alarms/a", 1, True,
                                                  b'{"state":"unack"}')


async def test_a_nudged_lane_tries_again_at_once_not_at_the_end_of_its_backoff() -> None:
    """The broker is back: a fire notice must not wait out a 30 s backoff."""
    sent: list[bytes] = []

    class Broker:
        up = False

        async def send(self, d: Delivery) -> None:
            if not self.up:
                raise DeliveryError("not_connected", retryable=True)
            sent.append(d.body)

    broker = Broker()
    box = Outbox(None)
    dispatcher = OutboxDispatcher(box, {"mqtt:fire": broker},
                                  backoff_factory=lambda: Backoff(30.0, 30.0))
    task = asyncio.create_task(dispatcher.run())
    try:
        box.add(delivery(1, lane="mqtt:fire", ms=int(time.time() * 1000)))
        box.sync()
        await asyncio.sleep(0.1)  # the first attempt failed; a 30 s wait begins
        assert sent == []
        broker.up = True
        dispatcher.nudge("mqtt:fire")
        await asyncio.wait_for(dispatcher.join(5.0), 2.0)
        assert sent == [b'{"seq":1}']
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
