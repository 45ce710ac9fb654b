"""Payload decoders: gateway JSON, line protocol and the Sparkplug B host.

Pure functions and state machines from bytes to readings and rejections; no
I/O. The engine picks one per topic from :mod:`decoders.registry`.
"""
