"""A subscriber's own pages, opened from links in their email: unsubscribe (RFC 8058
one-click), preferences (CSRF-protected) and the web archive of each edition.

One-click: a POST with ``List-Unsubscribe=One-Click`` (urlencoded or multipart), no cookie,
no CSRF token, answers 200 with no redirect, and the subscriber is out before the response.
A GET shows a button and changes nothing, so link-following scanners unsubscribe nobody.
"""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import InputError, TokenError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.render import shorten_authors
from newsletter.schedule import WEEKDAYS
from newsletter.sources.text import safe_url
from newsletter.web.forms import MAX_KEYWORDS, PreferencesForm, parse_form
from newsletter.web.pages import time_zones
from newsletter.web.site import Site, read_form

CSRF_AGE = 24 * 3600  # a preferences form is good for a day
SUMMARY = 600


async def unsubscribe_page(site: Site, request: Request) -> Response:
    sub = site.holder("unsubscribe", request.path_params["token"])
    if sub is None:
        return site.invalid()
    if sub.status is not SubscriberStatus.ACTIVE and sub.status is not SubscriberStatus.PENDING:
        return site.message("You are unsubscribed", "This address receives nothing from us.")
    return site.message(
        "Unsubscribe",
        "Press the button to stop receiving this digest. It takes effect at once.",
        action=request.url.path,
        fields={"List-Unsubscribe": "One-Click"},
        button="Unsubscribe",
    )


async def unsubscribe(site: Site, request: Request) -> Response:
    sub = site.holder("unsubscribe", request.path_params["token"])
    if sub is None:
        return site.invalid()
    form = await read_form(request, 10)
    if form is None or form.get("List-Unsubscribe") != "One-Click":
        return site.message(
            "Unsubscribe",
            "Expected the form field List-Unsubscribe=One-Click (RFC 8058).",
            status=400,
        )
    site.store.unsubscribe_id(sub.id, site.clock())
    return site.message(
        "You are unsubscribed", "You will not receive this digest any more. Sorry to see you go."
    )


def _preferences(site: Site, request: Request, sub: Subscriber, **state: object) -> Response:
    values: dict[str, object] = {
        "title": "Your preferences",
        "email": sub.email,
        "topics": site.topics,
        "chosen": sub.topics,
        "keywords": ", ".join(sub.keywords),
        "max_keywords": MAX_KEYWORDS,
        "frequency": sub.frequency,
        "timezone": sub.timezone,
        "zones": time_zones(),
        "paused": sub.paused,
        "send_hour": sub.send_hour,
        "send_weekday": None if sub.send_weekday is None else WEEKDAYS[sub.send_weekday],
        "weekdays": WEEKDAYS,
        "default_at": site.schedule.send_at,
        "default_weekday": site.schedule.weekly_day,
        "csrf": site.signer.make("csrf", sub.id),
        "unsubscribe_url": site.path("unsubscribe", sub.id),
        "saved": False,
        "error": "",
    }
    values.update(state)
    status = 400 if values["error"] else 200
    return site.pages.render("preferences.html", status, None, **values)


def _owner(site: Site, request: Request) -> Subscriber | Response:
    """The active subscriber the preferences link is for, or the page to show instead."""
    sub = site.holder("preferences", request.path_params["token"])
    if sub is None:
        return site.invalid()
    if sub.status is SubscriberStatus.ACTIVE:
        return sub
    if sub.status is SubscriberStatus.PENDING:
        return site.message(
            "Not confirmed yet", "Confirm your subscription first, with the link we emailed you."
        )
    return site.message("You are unsubscribed", "This address receives nothing from us.")


async def preferences_page(site: Site, request: Request) -> Response:
    sub = _owner(site, request)
    return sub if isinstance(sub, Response) else _preferences(site, request, sub)


async def preferences(site: Site, request: Request) -> Response:
    sub = _owner(site, request)
    if isinstance(sub, Response):
        return sub
    if not _same_origin(site, request):
        return site.message("Not saved", "This form was sent from another site.", status=403)
    form = await read_form(request, 200)
    if form is None:
        return _preferences(site, request, sub, error="Form: send text fields only, no files")
    try:
        if site.signer.read("csrf", str(form.get("csrf", "")), max_age=CSRF_AGE) != sub.id:
            raise TokenError("csrf")
    except TokenError:
        return site.message(
            "Not saved",
            "This form has expired. Open your preferences again and resubmit.",
            status=403,
            link=request.url.path,
            link_text="Open your preferences",
        )
    try:
        parsed = parse_form(PreferencesForm, form, {t.id for t in site.topics}, time_zones())
    except InputError as exc:
        return _preferences(site, request, sub, error=str(exc))
    assert isinstance(parsed, PreferencesForm)
    site.store.update_preferences(
        sub.id,
        topics=parsed.topics,
        keywords=parsed.keywords,
        frequency=parsed.frequency,
        timezone=parsed.timezone,
        paused=parsed.paused,
        now=site.clock(),
        send_hour=parsed.send_hour,
        send_weekday=None if parsed.send_weekday is None else WEEKDAYS.index(parsed.send_weekday),
    )
    fresh = site.store.subscriber(id=sub.id) or sub
    return _preferences(site, request, fresh, saved=True)


def _same_origin(site: Site, request: Request) -> bool:
    """A browser's Origin header, when sent, must be this site (behind a proxy: base_url)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    own = {site.base_url, f"{request.url.scheme}://{request.headers.get('host', '')}"}
    return origin.rstrip("/") in own


async def archive(site: Site, request: Request) -> Response:
    sub = site.holder("archive", request.path_params["token"])
    try:
        day = date.fromisoformat(request.path_params["day"])
    except ValueError:
        return site.invalid()
    ids = None if sub is None else site.store.delivered_paper_ids(sub.id, day)
    if sub is None or ids is None:
        return site.invalid()
    items = []
    for p in site.store.papers_by_id(ids):
        text = p.summary or p.abstract
        links = [
            (label, url)
            for label, url in (
                ("Abstract", safe_url(p.url)),
                ("PDF", safe_url(p.pdf_url)),
                ("Code", safe_url(p.code_url)),
                ("Project", safe_url(p.project_url)),
            )
            if url
        ]
        items.append(
            {
                "title": p.title,
                "url": p.url,
                "authors": shorten_authors(p.authors),
                "summary": text if len(text) <= SUMMARY else text[:SUMMARY].rsplit(" ", 1)[0] + "…",
                "badges": [
                    *([f"{p.signals.upvotes} upvotes"] if p.signals.upvotes else []),
                    *([f"{p.signals.stars} stars"] if p.signals.stars else []),
                    *p.categories[:3],
                ],
                "links": links,
            }
        )
    return site.pages.render(
        "archive.html",
        title=f"Your edition of {day.strftime('%d %B %Y').lstrip('0')}",
        items=items,
        preferences_url=site.path("preferences", sub.id),
        unsubscribe_url=site.path("unsubscribe", sub.id),
    )
