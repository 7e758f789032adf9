"""Sign-up and confirmation: double opt-in that cannot be turned against strangers.

The form's answer is the same page whether the address is new, pending, confirmed or
suppressed, and the confirmation email is sent after the response (a background task), so
neither the page nor its timing tells which. Limits: sign-ups per client address per window
(429), one confirmation email per address per 24 hours, a site-wide hourly cap, and a
honeypot field. The confirmation link opens a page with a button; only its POST confirms,
so mail scanners that follow links confirm nothing.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from newsletter.errors import InputError, TokenError
from newsletter.web.forms import SignupForm, parse_form
from newsletter.web.site import Site, client_ip, log, read_form

SENT_LINES = (
    "If this address can subscribe, a confirmation email is on its way to it.",
    "Open it and press the button to start receiving the digest. The link works once and "
    "for 72 hours. Nothing else is sent until you confirm.",
)


def subscribe_page(
    site: Site,
    request: Request,
    error: str = "",
    status: int = 200,
    form: FormData | None = None,
) -> Response:
    """The sign-up form; after an error, with what was entered (escaped when shown)."""
    known = {t.id for t in site.topics}
    entered = str(form.get("email", ""))[:320] if form else ""
    chosen = tuple(t for t in form.getlist("topics") if t in known) if form else ()
    frequency = "weekly" if form and form.get("frequency") == "weekly" else "daily"
    return site.pages.render(
        "subscribe.html",
        status,
        title="Subscribe",
        intro="Trending research papers on the topics you choose, by email.",
        topics=site.topics,
        error=error,
        email=entered,
        chosen=chosen,
        frequency=frequency,
    )


async def subscribe(site: Site, request: Request) -> Response:
    now = site.clock()
    limits = site.limits
    window = timedelta(seconds=limits.signup_window_seconds)
    if not site.store.allow("signup-ip", client_ip(request), now, limits.signups_per_ip, window):
        return site.message(
            "Too many sign-ups",
            "Too many sign-ups came from your network. Please try again later.",
            status=429,
            headers={"retry-after": str(limits.signup_window_seconds)},
        )
    form = await read_form(request, 100)
    if form is None:  # a file, too many fields, a broken multipart body: the form again
        return subscribe_page(site, request, "Form: send text fields only, no files", 400)
    try:
        parsed = parse_form(SignupForm, form, {t.id for t in site.topics})
    except InputError as exc:
        return subscribe_page(site, request, str(exc), 400, form)
    assert isinstance(parsed, SignupForm)
    done = site.message("Check your inbox", *SENT_LINES)
    if parsed.website:  # the honeypot was filled: a bot; answer as usual, do nothing
        return done
    sid, state = site.store.sign_up(parsed.email, parsed.topics, parsed.frequency, now)
    if sid is None or state not in ("added", "pending"):
        return done  # confirmed or suppressed: the same page, and no email
    nonce = site.store.issue_confirmation(sid, now)
    if nonce is None:
        return done  # one confirmation email a day per address
    if limits.confirmations_per_hour and not site.store.allow(
        "confirmations", "*", now, limits.confirmations_per_hour, timedelta(hours=1)
    ):
        site.store.withdraw_confirmation(nonce)
        log.warning("site-wide cap of confirmation emails per hour reached")
        return done
    confirm_url = f"{site.base_url}/confirm/{site.signer.make_text('confirm', nonce)}"
    unsubscribe_url = site.url("unsubscribe", sid)
    done.background = BackgroundTask(_send, site, parsed.email, nonce, confirm_url, unsubscribe_url)
    return done


async def _send(site: Site, to: str, nonce: str, confirm_url: str, unsubscribe_url: str) -> None:
    if site.mailer is None:
        log.warning("no mailer configured: confirmation email not sent")
        ok = False
    else:
        ok = await site.mailer.send(to, confirm_url, unsubscribe_url)
    if not ok:
        site.store.withdraw_confirmation(nonce)  # so the address may try again


def _nonce(site: Site, token: str) -> str | None:
    try:
        age = int(site.confirm_age.total_seconds())
        return site.signer.read_text("confirm", token, max_age=age)
    except TokenError:
        return None


async def confirm_page(site: Site, request: Request) -> Response:
    nonce = _nonce(site, request.path_params["token"])
    if nonce is None or not site.store.confirmation_usable(nonce, site.clock(), site.confirm_age):
        return site.invalid()
    return site.message(
        "Confirm your subscription",
        "Press the button to start receiving the digest.",
        action=request.url.path,
        button="Confirm my subscription",
    )


async def confirm(site: Site, request: Request) -> Response:
    nonce = _nonce(site, request.path_params["token"])
    sid = None if nonce is None else site.store.confirm(nonce, site.clock(), site.confirm_age)
    if sid is None:
        return site.invalid()
    return site.message(
        "You are subscribed",
        "The next edition will reach you. You can choose topics, keywords, how often and "
        "your time zone at any time.",
        link=site.path("preferences", sid),
        link_text="Choose your preferences",
    )
