"""Notification channels: the SSE hub, MQTT alarm topics, webhooks and fire
control, each a :class:`notify.base.Notifier`."""
