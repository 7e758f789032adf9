"""The web app (ASGI, Starlette): for now the unsubscribe routes every email links to.

``List-Unsubscribe`` points here. RFC 8058 one-click: a POST with the body
``List-Unsubscribe=One-Click`` (urlencoded or multipart), no cookies, no CSRF token, answers
200 with no redirect, and the subscriber is out before the response. A GET shows a page with
a button and changes nothing, so mail scanners that follow links unsubscribe nobody. Every
invalid token gets the same answer.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.errors import TokenError
from newsletter.store import Store
from newsletter.subscriptions import Signer

MAX_BODY = 16 * 1024
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
INVALID = "This link is invalid or has expired."


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"
        "button{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:0;"
        "background:#0b5cad;color:#fff;cursor:pointer}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def create_app(
    store: Store, signer: Signer, list_name: str, clock: Callable[[], datetime]
) -> ASGIApp:
    """The app; the CLI builds the store, signer and clock (the edges) and passes them in."""

    def subscriber_of(token: str) -> int | None:
        try:
            sid = signer.read("unsubscribe", token)
        except TokenError:
            return None
        return sid if store.subscriber(id=sid) is not None else None

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        if subscriber_of(token) is None:
            return _page("Unsubscribe", f"<p>{INVALID}</p>", 400)
        return _page(
            f"Unsubscribe from {list_name}",
            "<p>Press the button to stop receiving this digest.</p>"
            '<form method="post"><input type="hidden" name="List-Unsubscribe" '
            'value="One-Click"><button type="submit">Unsubscribe</button></form>',
        )

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        sid = subscriber_of(token)
        if sid is None:
            return _page("Unsubscribe", f"<p>{INVALID}</p>", 400)
        form = await request.form(max_files=0, max_fields=10)
        if form.get("List-Unsubscribe") != "One-Click":
            return _page("Unsubscribe", "<p>Expected List-Unsubscribe=One-Click.</p>", 400)
        store.unsubscribe_id(sid, clock())
        return _page(
            "You are unsubscribed",
            f"<p>You will not receive {html.escape(list_name)} any more.</p>",
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    return _Guard(app)


class _Guard:
    """Security headers on every response, and a cap on request bodies, counted as they
    arrive (a chunked body has no Content-Length to check up front)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        # read the whole (small) body first, counting as it arrives: a chunked body has no
        # Content-Length to check up front; then hand it to the app in one piece
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await PlainTextResponse("request too large", 413)(scope, receive, with_headers)
                return
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, with_headers)
