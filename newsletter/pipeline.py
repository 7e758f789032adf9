"""One edition, end to end: collect -> rank -> render -> deliver, resumable.

Every edge is injected (store, fetcher, sender, clock value, signing key); this module only
orchestrates. The ledger row is claimed before the SMTP transaction and marked after it, so a
rerun sends every row not yet sent and nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from newsletter.config import Config
from newsletter.deliver import Sender, is_hard_bounce
from newsletter.errors import SMTPUnavailableError
from newsletter.mail import (
    ListHeaders,
    build_message,
    list_id_for,
    message_id,
    sender_domain,
    to_bytes,
)
from newsletter.models import (
    DeliveryStatus,
    Digest,
    OutgoingMessage,
    RunReport,
    Subscriber,
    SubscriberStatus,
)
from newsletter.rank import RankingContext
from newsletter.render import Branding, Links, Renderer
from newsletter.store import Store
from newsletter.subscriptions import Signer

MAX_ATTEMPTS = 5
log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def edition_date_for(now: datetime, zone: str) -> date:
    """The edition a run at ``now`` belongs to: the calendar day in the list's time zone."""
    return now.astimezone(ZoneInfo(zone)).date()


def is_due(subscriber: Subscriber, edition: date) -> bool:
    """Daily subscribers every day; weekly ones on Mondays."""
    return subscriber.frequency == "daily" or edition.weekday() == 0


class Edition:
    """The once-per-edition state: candidates, ranking context, history, renderer."""

    def __init__(
        self, config: Config, store: Store, now: datetime, renderer: Renderer | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.date = edition_date_for(now, config.newsletter.timezone)
        topics = {t.id: t for t in config.topic_values()}
        since = now - timedelta(days=config.digest.lookback_days)
        self.candidates = store.papers_since(since)
        self.context = RankingContext(self.candidates, topics)
        self._renderer = renderer
        self._history: dict[int, set[str]] | None = None

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            nl = self.config.newsletter
            self._renderer = Renderer(
                Branding(nl.name, nl.base_url, nl.postal_address), self.config.templates_dir()
            )
        return self._renderer

    def history(self, subscribers: Sequence[Subscriber]) -> dict[int, set[str]]:
        if self._history is None:
            self._history = self.store.sent_paper_ids(
                [s.id for s in subscribers], [p.id for p in self.candidates]
            )
        return self._history

    def digest(self, subscriber: Subscriber, history: dict[int, set[str]]) -> Digest:
        items = self.context.rank(
            subscriber, history.get(subscriber.id, set()), self.config.digest.max_papers
        )
        return Digest(subscriber, self.date, tuple(items))

    def links(self, signer: Signer, subscriber: Subscriber) -> Links:
        base = self.config.newsletter.base_url
        return Links(
            unsubscribe=f"{base}/unsubscribe/{signer.make('unsubscribe', subscriber.id)}",
            archive=f"{base}/archive/{self.date}/{signer.make('archive', subscriber.id)}",
        )

    def compose(
        self, digest: Digest, signer: Signer, secret: str, msg_id: str | None = None
    ) -> Composed:
        """Render one digest and wrap it in its message, headers and all."""
        nl = self.config.newsletter
        sub = digest.subscriber
        domain = sender_domain(nl.sender)
        links = self.links(signer, sub)
        rendered = self.renderer.render(digest, links)
        msg_id = msg_id or message_id(secret, self.date, sub.id, domain)
        msg = build_message(
            rendered,
            to_name=sub.name,
            to_addr=sub.email,
            msg_id=msg_id,
            now=self.now,
            headers=ListHeaders(
                nl.sender,
                nl.list_id or list_id_for(nl.name, domain),
                links.unsubscribe,
                nl.unsubscribe_mailto,
            ),
        )
        return Composed(digest, rendered.subject, msg_id, to_bytes(msg))


@dataclass(frozen=True, slots=True)
class Composed:
    """One subscriber's finished message for this edition."""

    digest: Digest
    subject: str
    message_id: str
    data: bytes


def digests(config: Config, store: Store, now: datetime, email: str | None = None) -> list[Digest]:
    """Every active subscriber's digest for the edition at ``now`` (or one subscriber's)."""
    return _digests(Edition(config, store, now), store, email)


def _digests(edition: Edition, store: Store, email: str | None) -> list[Digest]:
    subs = store.subscribers(SubscriberStatus.ACTIVE)
    if email is not None:
        subs = [s for s in subs if s.email == email]
    history = edition.history(subs)
    return [edition.digest(s, history) for s in subs]


def preview(
    config: Config,
    store: Store,
    signer: Signer,
    secret: str,
    now: datetime,
    email: str | None = None,
) -> list[Composed]:
    """The message each active subscriber would get now, ledger untouched."""
    edition = Edition(config, store, now)
    return [edition.compose(d, signer, secret) for d in _digests(edition, store, email)]


async def send_edition(
    config: Config,
    store: Store,
    sender: Sender,
    signer: Signer,
    secret: str,
    now: datetime,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Deliver today's edition to every due subscriber not yet served; resumable.

    Call it holding the run lock: rows left ``sending`` are taken as interrupted.
    """
    edition = Edition(config, store, now)
    report = RunReport(edition.date, dry_run=dry_run)
    edition_id = store.edition(edition.date, now)
    store.recover_interrupted(edition_id, now)
    active = {s.id: s for s in store.subscribers(SubscriberStatus.ACTIVE)}
    store.plan_deliveries(
        edition_id, [s.id for s in active.values() if is_due(s, edition.date)], now
    )
    rows = store.deliveries(edition_id)
    history = edition.history(list(active.values()))
    from_addr = parseaddr(config.newsletter.sender)[1]
    for done, row in enumerate(rows, start=1):
        if progress:
            progress(done, len(rows))
        status = DeliveryStatus(row["status"])
        if status in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.BOUNCED):
            report.already_done += 1
            continue
        if status is DeliveryStatus.FAILED and row["attempts"] >= MAX_ATTEMPTS:
            report.failed += 1
            continue
        sub = active.get(row["subscriber_id"])
        if sub is None:  # left the list after this edition was planned
            store.mark(row["id"], DeliveryStatus.SKIPPED, "no longer active", now)
            continue
        digest = edition.digest(sub, history)
        if not digest.items and not config.digest.send_empty:
            store.mark(row["id"], DeliveryStatus.SKIPPED, "nothing new", now)
            report.skipped_empty += 1
            report.rows.append(_row(sub, 0, "skipped", "nothing new"))
            continue
        composed = edition.compose(digest, signer, secret, row["message_id"])
        if not store.claim(row["id"], composed.message_id, [i.paper.id for i in digest.items], now):
            continue  # another process took it
        try:
            result = await sender.send(
                OutgoingMessage(sub.id, from_addr, sub.email, composed.message_id, composed.data)
            )
        except SMTPUnavailableError as exc:
            store.release(row["id"], now)
            report.pending = sum(
                1 for r in rows[done - 1 :] if r["status"] in ("pending", "uncertain", "failed")
            )
            report.rows.append(_row(sub, len(digest.items), "pending", str(exc)))
            raise SendInterrupted(report, exc) from None
        log.info(
            "%s %s: %s %s",
            composed.message_id,
            sub.email,
            "accepted" if result.ok else "refused",
            result.reply[:200],
        )
        if result.ok:
            store.mark_sent(row["id"], result.reply[:200], now)
            report.sent += 1
            report.rows.append(
                _row(sub, len(digest.items), "written" if dry_run else "sent", composed.subject)
            )
        elif is_hard_bounce(result):
            store.mark(row["id"], DeliveryStatus.BOUNCED, f"{result.code} {result.reply}", now)
            store.set_subscriber_status(sub.email, SubscriberStatus.BOUNCED, now)
            report.bounced += 1
            report.rows.append(_row(sub, len(digest.items), "bounced", result.reply))
        else:
            store.mark(row["id"], DeliveryStatus.FAILED, f"{result.code} {result.reply}", now)
            report.failed += 1
            report.rows.append(
                _row(sub, len(digest.items), "failed", f"{result.code} {result.reply}")
            )
    await sender.close()
    return report


class SendInterrupted(Exception):
    """The server went away mid-run: carries the partial report up to the caller."""

    def __init__(self, report: RunReport, cause: SMTPUnavailableError) -> None:
        super().__init__(str(cause))
        self.report = report
        self.cause = cause


def _row(sub: Subscriber, papers: int, status: str, detail: str) -> dict[str, object]:
    return {"subscriber": sub.email, "papers": papers, "status": status, "detail": detail[:200]}
