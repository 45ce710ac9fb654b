"""The plant model: what every other package speaks in.

The plant's configuration (enterprise → site → workshop → area → sensor), the
sensor table the detectors index, the batch of readings, and the alarm event.
It imports nothing else of plantwatch, so every package can depend on it
(see docs/architecture.md for the layers).
"""
