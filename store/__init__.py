"""Where readings and fitted models are kept: InfluxDB (v1 HTTP API), SQLite,
and the fitted MSPC models in the state directory. Every reading store meets
the :class:`store.base.ReadingStore` protocol."""
