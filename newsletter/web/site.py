"""What the web app is built from: the edges (store, signer, clock, mailer) and the list's
settings, gathered by the CLI (the composition root) and passed to ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.config_schedule import ScheduleSection
from newsletter.config_web import WebSection
from newsletter.errors import TokenError
from newsletter.models import Subscriber, Topic
from newsletter.store import Store
from newsletter.subscriptions import Signer
from newsletter.web.pages import Pages

log = logging.getLogger("newsletter.web")
INVALID = "This link is invalid or has expired."


class Mailer(Protocol):
    """Sends the confirmation email; True when the server accepted it."""

    async def send(self, to: str, confirm_url: str, unsubscribe_url: str) -> bool: ...


@dataclass(slots=True)
class Site:
    store: Store
    signer: Signer
    clock: Callable[[], datetime]
    pages: Pages
    base_url: str
    topics: Sequence[Topic] = ()
    mailer: Mailer | None = None
    limits: WebSection = field(default_factory=WebSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)

    @property
    def confirm_age(self) -> timedelta:
        return timedelta(hours=self.limits.confirm_hours)

    def url(self, purpose: str, subscriber_id: int) -> str:
        """The absolute link of a page for one subscriber (as emails carry it)."""
        return f"{self.base_url}/{purpose}/{self.signer.make(purpose, subscriber_id)}"

    def path(self, purpose: str, subscriber_id: int) -> str:
        """The same page as a path on this site (links on pages; never off the site)."""
        return f"/{purpose}/{self.signer.make(purpose, subscriber_id)}"

    def holder(self, purpose: str, token: str) -> Subscriber | None:
        """The subscriber a token of ``purpose`` was made for, or None: every kind of bad
        token (forged, of another purpose, for a forgotten subscriber) ends the same way."""
        try:
            sid = self.signer.read(purpose, token)
        except TokenError:
            return None
        return self.store.subscriber(id=sid)

    def invalid(self) -> HTMLResponse:
        """The one answer every invalid token gets, on every route."""
        return self.pages.render("message.html", 400, title="Link not valid", lines=[INVALID])

    def message(
        self,
        title: str,
        *lines: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> HTMLResponse:
        """A short page: a title, a few lines, optionally a button (``action``) or a link."""
        return self.pages.render(
            "message.html", status, headers, title=title, lines=list(lines), **extra
        )


async def read_form(request: Request, max_fields: int) -> FormData | None:
    """The posted form, or None when it cannot be one of ours: a file, too many fields, a
    broken multipart body (Starlette refuses those before any field can be looked at)."""
    try:
        return await request.form(max_files=0, max_fields=max_fields)
    except HTTPException:
        return None


def client_ip(request: Request) -> str:
    """The client's address as uvicorn saw it (after X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else "unknown"
