"""Build the web app's ``Site`` from the config: the real edges (store, signer, wall clock,
an SMTP mailer for confirmation emails)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from newsletter.config import Config
from newsletter.mail import list_id_for, sender_domain
from newsletter.pipeline import renderer_for
from newsletter.sending import dkim_signer, smtp_connect
from newsletter.store import Store
from newsletter.subscriptions import Signer
from newsletter.web.mailer import ConfirmationMailer
from newsletter.web.pages import Pages
from newsletter.web.site import Site


def wall_clock() -> datetime:
    return datetime.now(UTC)


def build_site(
    config: Config, store: Store, signer: Signer, clock: Callable[[], datetime] = wall_clock
) -> Site:
    nl = config.newsletter
    mailer = ConfirmationMailer(
        renderer=renderer_for(config),
        sender=nl.sender,
        list_id=nl.list_id or list_id_for(nl.name, sender_domain(nl.sender)),
        envelope_from=config.envelope_from(),
        connect=smtp_connect(config),
        clock=clock,
        unsubscribe_mailto=nl.unsubscribe_mailto,
        dkim=dkim_signer(config),
    )
    pages = Pages(
        {"name": nl.name, "postal_address": nl.postal_address, "base_url": nl.base_url},
        config.templates_dir(),
    )
    return Site(
        store=store,
        signer=signer,
        clock=clock,
        pages=pages,
        base_url=nl.base_url,
        topics=config.topic_values(),
        mailer=mailer,
        limits=config.web,
        schedule=config.schedule,
    )
