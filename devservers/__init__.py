"""Development servers: Mosquitto and InfluxDB started on free loopback ports
for tests and benchmarks, and the demo's embedded broker. Never on the runtime
path of ``plantwatch run``."""
