"""Fuzz the JSON gateway decoder: ``python fuzz/fuzz_json.py fuzz/corpus/json -max_total_time=60``.

The input is the MQTT payload as it is (JSON is text: libFuzzer's byte
mutations and ``fuzz/json.dict`` tokens reach its structure without a
``FuzzedDataProvider``). Checked per input: no exception escapes
``decode_gateway_json``, every dead letter serialises with ``orjson.dumps``,
accepted readings are finite, of known sensors, within the kept time window,
and a message rejected whole keeps no reading (see ``fuzz_support``).
"""

from __future__ import annotations

import fuzz_support as fs

from decoders.json_gateway import decode_gateway_json

TOPIC = "plant/s1/gw-tf-a"


def test_one(data: bytes) -> None:
    """One gateway message, arriving at ``NOW_MS`` with the service's default limits."""
    result = decode_gateway_json(data, fs.SENSOR_INDEX, fs.NOW_MS, fs.LIMITS)
    fs.check_result(result, TOPIC, data)


if __name__ == "__main__":
    fs.fuzz(test_one)
