"""The web app (ASGI, Starlette, served by uvicorn behind the operator's reverse proxy).

Routes::

    GET  /                        the subscribe form (also /subscribe)
    POST /subscribe               sign up: pending + one confirmation email (double opt-in)
    GET  /confirm/{token}         a page with a button          POST: confirms, once, 72 h
    GET  /unsubscribe/{token}     a page with a button          POST: RFC 8058 one-click
    GET  /preferences/{token}     topics, keywords, frequency, time zone, pause
    POST /preferences/{token}     saves them (CSRF token + Origin check)
    GET  /archive/{day}/{token}   the subscriber's edition of that day ("view in browser")
    GET  /site.css, /healthz

Every page carries the security headers of ``guard.Guard``; every invalid token, whatever
its route or purpose, gets the same 400 page. No route redirects, so none can send a
visitor off the site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from newsletter.web import account, signup
from newsletter.web.guard import MAX_BODY, SECURITY_HEADERS, Guard
from newsletter.web.pages import Pages
from newsletter.web.site import Mailer, Site

__all__ = ["MAX_BODY", "SECURITY_HEADERS", "Mailer", "Pages", "Site", "create_app"]

Handler = Callable[[Site, Request], Awaitable[Response]]


def create_app(site: Site) -> ASGIApp:
    """The app over one ``Site`` (store, signer, clock, mailer: the edges, built by the CLI)."""

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(site, request)

        return endpoint

    async def home(request: Request) -> Response:
        return signup.subscribe_page(site, request)

    async def stylesheet(request: Request) -> Response:
        return PlainTextResponse(
            site.pages.stylesheet,
            media_type="text/css",
            headers={"cache-control": "public, max-age=3600"},
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def no_content(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask every site; nothing to show

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/subscribe", home, methods=["GET"]),
        Route("/subscribe", bind(signup.subscribe), methods=["POST"]),
        Route("/confirm/{token}", bind(signup.confirm_page), methods=["GET"]),
        Route("/confirm/{token}", bind(signup.confirm), methods=["POST"]),
        Route("/unsubscribe/{token}", bind(account.unsubscribe_page), methods=["GET"]),
        Route("/unsubscribe/{token}", bind(account.unsubscribe), methods=["POST"]),
        Route("/preferences/{token}", bind(account.preferences_page), methods=["GET"]),
        Route("/preferences/{token}", bind(account.preferences), methods=["POST"]),
        Route("/archive/{day}/{token}", bind(account.archive), methods=["GET"]),
        Route("/site.css", stylesheet, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/favicon.ico", no_content, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    # no redirect to add or drop a trailing slash either: Starlette builds that Location
    # from the request's Host header, which would send visitors to any host named there
    app.router.redirect_slashes = False
    return Guard(app)
