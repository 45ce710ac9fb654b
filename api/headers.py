"""Security headers on every response: what a browser may load, frame and leak.

The dashboard (``/`` and ``/static/``) gets a Content-Security-Policy that
allows this server's own scripts, styles, images and connections and nothing
else: no inline script or style, no ``eval``, no plug-ins, no framing. A
script injected through some future bug then cannot run, and the page cannot
be framed to trick an operator into clicking "Ack" (clickjacking).

API answers (JSON, the event stream, metrics) load nothing, so theirs is
``default-src 'none'``. The offline API docs (``/docs``, ``/redoc`` and their
files) are Swagger UI and ReDoc, which start from inline scripts and styles: they
get ``frame-ancestors 'none'`` only. Every response also carries
``X-Frame-Options: DENY`` (browsers older than CSP's ``frame-ancestors``),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it only
adds headers to ``http.response.start``, so streaming responses (the alarm
event stream) pass through untouched.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "DASHBOARD_CSP", "DOCS_CSP", "SecurityHeaders", "csp_for"]

DASHBOARD_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP: Final = "frame-ancestors 'none'"
_DOCS_PREFIXES: Final = ("/docs", "/redoc", "/static-offline-docs/")

_COMMON: Final = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def csp_for(path: str) -> str:
    """The Content-Security-Policy of the response to ``path``."""
    if path == "/" or path.startswith("/static/"):
        return DASHBOARD_CSP
    if path.startswith(_DOCS_PREFIXES):
        return DOCS_CSP
    return API_CSP


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = csp_for(scope.get("path", "")).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in _NAMES]
                headers.append((b"content-security-policy", csp))
                headers.extend(_COMMON)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_NAMES: Final = frozenset({b"content-security-policy", *(k for k, _ in _COMMON)})
