"""Fuzz the line protocol decoder: ``python fuzz/fuzz_lp.py fuzz/corpus/lp -max_total_time=60``.

The input is the MQTT payload as it is, decoded twice: with ``precision="auto"``
(the default) and with one explicit unit (``ns``, ``us``, ``ms`` or ``s``)
picked by the payload's length. The precision is a setting, and a timestamp
harmless in one unit can overflow or fall out of range in another; picking one
unit per input rather than all four keeps the run fast (instrumented Python is
slow), and a mutation that changes the length moves the input to another unit.
Checked per decode: no exception escapes ``decode_line_protocol``, every dead
letter serialises with ``orjson.dumps``, accepted readings are finite, of
known sensors, within the kept time window, and a message rejected whole keeps
no reading (see ``fuzz_support``).
"""

from __future__ import annotations

import fuzz_support as fs

from decoders.lp_gateway import PRECISIONS, decode_line_protocol

TOPIC = "plant/s1/lp"
_UNITS = tuple(p for p in PRECISIONS if p != "auto")


def test_one(data: bytes) -> None:
    """One line protocol message, arriving at ``NOW_MS``, in ``auto`` and one explicit unit."""
    for precision in ("auto", _UNITS[len(data) % len(_UNITS)]):
        result = decode_line_protocol(data, fs.SENSOR_INDEX, fs.NOW_MS, fs.LIMITS,
                                      precision=precision)
        fs.check_result(result, TOPIC, data)


if __name__ == "__main__":
    fs.fuzz(test_one)
