"""The durable notification outbox: nothing an operator or the fire control room must
hear is lost to a crash or to a receiver that is down.

Every notification that leaves the plant (a webhook, a fire-control notice, a
retained alarm state on the broker, an escalation) is first *recorded* here.
The channels add deliveries while an outcome is announced; the pipeline then
calls :meth:`Outbox.sync`, which appends them and fsyncs once, in the same step
as the journal record that caused them and before the readings behind that
record are acknowledged or the detector checkpoint moves past it (see
``ingest.pipeline.Pipeline._after_commit``). A ``kill -9`` at any moment
therefore leaves either the deliveries on disk, or the journal cut back at
start-up so that the broker redelivers the readings and the same records (and
deliveries) are produced again.

Delivery is at least once, in order per lane (a webhook target, its
fire-control lane, the broker, the broker's fire-control lane), with a stable
id: ``X-Plantwatch-Delivery`` is derived from the lane and the body, so a
delivery retried, resent after a restart, or produced again from redelivered
readings carries the same id and a receiver drops the repeat. Every body
names the time of its change, so two different notifications never share an
id. A delivery is retried until it succeeds, the receiver refuses it for good
(``notify.webhooks.REFUSED_FOR_GOOD``), or ``retry_for_s`` (default 24 h) has
passed since it was recorded.

File format (``<state_dir>/outbox.jsonl``, JSON lines, owner-only): an ``add``
line per delivery and a ``done`` line when it is settled. Done lines are not
fsynced (losing one sends a delivery again, which its id makes harmless). The
file is rewritten, with only the pending deliveries, once it has grown past
``rewrite_bytes`` and at most half of it is still pending.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from alarms.jsonl import FILE_MODE, make_private_dir, sync_dir, write_all

__all__ = ["Delivery", "Outbox", "Settled", "delivery_id"]

log = logging.getLogger(__name__)

Settled = Literal["delivered", "refused", "expired"]
"""How a delivery ended: sent, refused for good by the receiver, or given up after
``retry_for_s``."""

_NAMESPACE = uuid.UUID("5b0c7e1e-4a55-4c3e-9d7f-6f1d2c1a9e10")


def delivery_id(lane: str, body: bytes) -> str:
    """The stable id of one notification to one lane (a UUID derived from both).

    The same notification produced again (redelivered readings after a crash)
    gets the same id, so a receiver that drops repeated ids sees it once.
    """
    return str(uuid.uuid5(_NAMESPACE, lane + "\n" + body.decode("utf-8", "replace")))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification for one lane.

    ``lane`` is ``webhook:<target>`` or ``mqtt``; ``kind`` the event type
    (``alarm``, ``fire_control``, ``risk``, ...); ``body`` the exact bytes sent.
    MQTT deliveries also carry their ``topic``, ``qos`` and ``retain``.
    """

    id: str
    lane: str
    kind: str
    body: bytes = field(repr=False)
    created_ms: int
    topic: str | None = None
    qos: int = 1
    retain: bool = False

    @classmethod
    def make(cls, lane: str, kind: str, body: bytes, created_ms: int, *,
             topic: str | None = None, qos: int = 1, retain: bool = False) -> Delivery:
        key = body if topic is None else topic.encode() + b"\n" + body
        return cls(delivery_id(lane, key), lane, kind, body, created_ms, topic, qos, retain)

    def to_line(self) -> bytes:
        record: dict[str, Any] = {"add": self.id, "lane": self.lane, "kind": self.kind,
                                  "ms": self.created_ms, "body": self.body.decode()}
        if self.topic is not None:
            record.update(topic=self.topic, qos=self.qos, retain=self.retain)
        return orjson.dumps(record) + b"\n"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Delivery:
        return cls(str(record["add"]), str(record["lane"]), str(record["kind"]),
                   str(record["body"]).encode(), int(record["ms"]), record.get("topic"),
                   int(record.get("qos", 1)), bool(record.get("retain", False)))


class Outbox:
    """Deliveries recorded durably (or in memory, ``path=None``, for tests and backtests).

    Not thread-safe: the pipeline and the delivery workers share one event loop.
    ``on_added`` is called with each lane that got deliveries at a sync (the
    workers wake on it).
    """

    def __init__(self, path: str | Path | None, *, rewrite_bytes: int = 8 << 20) -> None:
        self.path = None if path is None else Path(path)
        self.rewrite_bytes = rewrite_bytes
        self._lanes: dict[str, OrderedDict[int, Delivery]] = {}
        self._staged: list[Delivery] = []
        self._fd: int | None = None
        self._bytes = 0
        self._seq = 0
        self._pending_bytes = 0
        self.torn_lines_dropped = 0
        self.unreadable_lines = 0
        self.on_added: Callable[[str], None] | None = None
        self.settled: dict[Settled, int] = {"delivered": 0, "refused": 0, "expired": 0}
        if self.path is not None:
            self._load()

    # ------------------------------------------------------------------ recording
    def add(self, delivery: Delivery) -> None:
        """Stage a delivery; it is recorded (and offered to its lane) at :meth:`sync`."""
        self._staged.append(delivery)

    def sync(self) -> int:
        """Record the staged deliveries: one append and one fsync. Returns how many.

        Raises OSError if the disk refuses: the caller must not acknowledge what
        these deliveries announce (it is produced again after a restart).
        """
        staged, self._staged = self._staged, []
        if not staged:
            return 0
        if self._fd is not None:
            data = b"".join(d.to_line() for d in staged)
            self._append(data, fsync=True, staged=staged)
        lanes: set[str] = set()
        for d in staged:
            # Every delivery is kept, in order, even one equal to another still
            # pending: a point shelved and unshelved sends the same state twice,
            # and the second is the truth. (The receiver drops a repeated id.)
            self._seq += 1
            self._lanes.setdefault(d.lane, OrderedDict())[self._seq] = d
            self._pending_bytes += len(d.to_line())
            lanes.add(d.lane)
        if self.on_added is not None:
            for name in sorted(lanes):
                self.on_added(name)
        return len(staged)

    def _append(self, data: bytes, *, fsync: bool, staged: list[Delivery] | None = None
                ) -> None:
        """Append ``data``; on a write error cut the file back to its last whole line
        (a short write must not leave a torn line in the middle) and re-raise."""
        assert self._fd is not None
        try:
            write_all(self._fd, data)
            if fsync:
                os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._bytes)
            if staged is not None:
                self._staged = staged + self._staged
            raise
        self._bytes += len(data)

    def settle(self, delivery: Delivery, how: Settled) -> None:
        """Mark the oldest pending delivery of its lane done (delivered, refused for
        good, or expired). Lanes deliver in order: only their head is settled."""
        lane = self._lanes.get(delivery.lane)
        if not lane:
            return
        seq, head = next(iter(lane.items()))
        if head is not delivery:
            return
        del lane[seq]
        self._pending_bytes -= len(delivery.to_line())
        self.settled[how] += 1
        if self._fd is not None:
            line = orjson.dumps({"done": delivery.id, "lane": delivery.lane, "how": how}) + b"\n"
            try:
                self._append(line, fsync=False)
            except OSError as exc:  # it is sent again after a restart; its id dedupes it
                log.warning("outbox: could not record delivery %s as %s: %s", delivery.id,
                            how, exc)
            self._maybe_rewrite()

    # ------------------------------------------------------------------ reading
    def head(self, lane: str) -> Delivery | None:
        """The oldest pending delivery of ``lane`` (lanes deliver in order)."""
        pending = self._lanes.get(lane)
        if not pending:
            return None
        return next(iter(pending.values()), None)

    def lanes(self) -> list[str]:
        return sorted(self._lanes)

    def pending(self, lane: str | None = None) -> Iterator[Delivery]:
        for name in [lane] if lane is not None else sorted(self._lanes):
            yield from list(self._lanes.get(name, {}).values())

    def depth(self, lane: str | None = None) -> int:
        if lane is not None:
            return len(self._lanes.get(lane, ()))
        return sum(len(p) for p in self._lanes.values())

    def oldest_ms(self, lane: str | None = None) -> int | None:
        """When the oldest pending delivery was recorded (None: nothing pending)."""
        heads = [self.head(name) for name in ([lane] if lane is not None else self._lanes)]
        times = [h.created_ms for h in heads if h is not None]
        return min(times) if times else None

    # ------------------------------------------------------------------ the file
    def _load(self) -> None:
        assert self.path is not None
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        self._fd = fd
        with open(self.path, "rb") as f:
            data = f.read()
        good = 0
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # a torn last line (a crash mid-append): never fsynced, never acked
            try:
                record = orjson.loads(raw)
                if "add" in record:
                    d = Delivery.from_record(record)
                    self._seq += 1
                    self._lanes.setdefault(d.lane, OrderedDict())[self._seq] = d
                    self._pending_bytes += len(d.to_line())
                elif "done" in record:
                    self._settle_loaded(str(record.get("lane")), str(record["done"]))
                else:
                    raise ValueError("neither 'add' nor 'done'")
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                # Skipped, not fatal: a safety service must start. Say what was lost.
                self.unreadable_lines += 1
                log.error("outbox %s: byte %d: not an outbox record (%s); skipped: a "
                          "notification may be lost or sent twice", self.path, good, exc)
            good += len(raw)
        if good < len(data):
            self.torn_lines_dropped += 1
            os.ftruncate(fd, good)
            log.warning("outbox %s: dropped a torn last line (%d bytes)", self.path,
                        len(data) - good)
        for name in [n for n, p in self._lanes.items() if not p]:
            del self._lanes[name]
        self._bytes = good
        if self.depth():
            log.info("outbox %s: %d notification(s) still to deliver", self.path, self.depth())

    def _settle_loaded(self, lane_name: str, delivery: str) -> None:
        """A ``done`` line read back: the oldest pending delivery of that id."""
        lane = self._lanes.get(lane_name)
        if not lane:
            return
        for seq, d in lane.items():
            if d.id == delivery:
                del lane[seq]
                self._pending_bytes -= len(d.to_line())
                return

    def _maybe_rewrite(self) -> None:
        """Keep the file small: rewrite it with only the pending deliveries."""
        if self.path is None or self._bytes < self.rewrite_bytes:
            return
        if self._pending_bytes * 2 > self._bytes:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                write_all(fd, b"".join(d.to_line() for d in self.pending()))
                os.fsync(fd)
            finally:
                os.close(fd)
            new_fd = os.open(tmp, os.O_RDWR | os.O_APPEND)
            os.replace(tmp, self.path)
        except OSError as exc:  # the long file still holds everything: carry on with it
            log.warning("outbox %s: could not rewrite it smaller: %s", self.path, exc)
            return
        # From here the new file is the outbox: swap the descriptor before anything
        # else can fail, so no later append goes to the unlinked old file.
        assert self._fd is not None
        old_fd, self._fd = self._fd, new_fd
        os.close(old_fd)
        self._bytes = os.fstat(new_fd).st_size
        with contextlib.suppress(OSError):
            sync_dir(self.path.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
