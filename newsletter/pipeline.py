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
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from newsletter.config import Config
from newsletter.deliver import Sender, is_hard_bounce
from newsletter.errors import SMTPUnavailableError, TemplateError
from newsletter.mail import (
    ListHeaders,
    build_message,
    list_id_for,
    message_id,
    needs_smtputf8,
    sender_domain,
    to_bytes,
)
from newsletter.models import (
    DeliveryStatus,
    Digest,
    OutgoingMessage,
    RunReport,
    SendResult,
    StoredPaper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.rank import Ranker, RankResult
from newsletter.rank.semantic import Encoder, paper_text
from newsletter.render import Branding, Links, Renderer
from newsletter.store import Store
from newsletter.subscriptions import Signer

MAX_ATTEMPTS = 5
log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def edition_date_for(now: datetime, zone: str) -> date:
    """The edition a run at ``now`` belongs to: the calendar day in the list's time zone."""
    return now.astimezone(ZoneInfo(zone)).date()


def embed_candidates(
    store: Store, encoder: Encoder | None, papers: Sequence[StoredPaper]
) -> npt.NDArray[np.float32] | None:
    """Each candidate's embedding, computing only those not cached yet (about 24 a second)."""
    if encoder is None or not papers:
        return None
    cached = store.embeddings([p.id for p in papers], encoder.name)
    missing = [p for p in papers if p.id not in cached]
    if missing:
        fresh = encoder.encode([paper_text(p) for p in missing])
        new = {p.id: v for p, v in zip(missing, fresh, strict=True)}
        store.save_embeddings(encoder.name, new)
        cached.update(new)
    return np.stack([cached[p.id] for p in papers]).astype(np.float32)


def is_due(subscriber: Subscriber, edition: date, last_sent: date | None) -> bool:
    """Daily subscribers every day; weekly ones when their last edition is a week old."""
    if subscriber.frequency != "weekly":
        return True
    return last_sent is None or (edition - last_sent).days >= 7


class Edition:
    """The once-per-edition state: candidates, ranking context, history, renderer."""

    def __init__(
        self,
        config: Config,
        store: Store,
        now: datetime,
        renderer: Renderer | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.date = edition_date_for(now, config.newsletter.timezone)
        topics = {t.id: t for t in config.topic_values()}
        since = now - timedelta(days=config.digest.lookback_days)
        self.candidates = store.papers_since(since)
        ids = [p.id for p in self.candidates]
        self.ranker = Ranker(
            self.candidates,
            topics,
            config.ranking.settings(),
            now,
            store.upvote_history(ids),
            encoder,
            embed_candidates(store, encoder, self.candidates),
        )
        self._renderer = renderer

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            nl = self.config.newsletter
            d = self.config.digest
            branding = Branding(
                nl.name,
                nl.base_url,
                nl.postal_address,
                {t.id: t.name for t in self.config.topics},
                d.layout,
                d.subject,
            )
            self._renderer = Renderer(branding, self.config.templates_dir())
        return self._renderer

    def rank(self, subscribers: Sequence[Subscriber]) -> RankResult:
        """Every subscriber's picks at once, minus what each was sent before."""
        history = self.store.sent_paper_ids(
            [s.id for s in subscribers], [p.id for p in self.candidates]
        )
        return self.ranker.rank(subscribers, history, self.config.digest.max_papers)

    def digest(self, subscriber: Subscriber, ranked: RankResult) -> Digest:
        return Digest(subscriber, self.date, tuple(ranked.items(subscriber.id)))

    def links(self, signer: Signer, subscriber: Subscriber) -> Links:
        base = self.config.newsletter.base_url
        return Links(
            unsubscribe=f"{base}/unsubscribe/{signer.make('unsubscribe', subscriber.id)}",
            archive=f"{base}/archive/{self.date}/{signer.make('archive', subscriber.id)}",
            preferences=f"{base}/preferences/{signer.make('preferences', subscriber.id)}",
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


def digests(
    config: Config,
    store: Store,
    now: datetime,
    email: str | None = None,
    encoder: Encoder | None = None,
) -> tuple[list[Digest], str]:
    """Every active subscriber's digest for the edition at ``now`` (or one subscriber's),
    and which relevance model chose them."""
    edition = Edition(config, store, now, encoder=encoder)
    return _digests(edition, store, email), edition.ranker.model


def _digests(edition: Edition, store: Store, email: str | None) -> list[Digest]:
    subs = store.subscribers(SubscriberStatus.ACTIVE)
    if email is not None:
        subs = [s for s in subs if s.email == email]
    ranked = edition.rank(subs)
    return [edition.digest(s, ranked) for s in subs]


def preview(
    config: Config,
    store: Store,
    signer: Signer,
    secret: str,
    now: datetime,
    email: str | None = None,
    encoder: Encoder | None = None,
) -> list[Composed]:
    """The message each active subscriber would get now, ledger untouched."""
    edition = Edition(config, store, now, encoder=encoder)
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
    encoder: Encoder | None = None,
) -> RunReport:
    """Deliver today's edition to every due subscriber not yet served; resumable.

    Call it holding the run lock: rows left ``sending`` are taken as interrupted. Raises
    ``SendInterrupted`` (with the report so far) when the server cannot be reached; the rows
    not reached stay pending for the next run.
    """
    edition = Edition(config, store, now, encoder=encoder)
    report = RunReport(edition.date, dry_run=dry_run)
    edition_id = store.edition(edition.date, now)
    store.recover_interrupted(edition_id, now)
    active = {s.id: s for s in store.subscribers(SubscriberStatus.ACTIVE)}
    weekly = [s.id for s in active.values() if s.frequency == "weekly"]
    last_sent = store.last_sent_dates(weekly) if weekly else {}
    due = [s.id for s in active.values() if is_due(s, edition.date, last_sent.get(s.id))]
    store.plan_deliveries(edition_id, due, now)
    rows = store.deliveries(edition_id)
    run = _Run(
        edition,
        store,
        sender,
        signer,
        secret,
        report,
        edition.rank(list(active.values())),
        active,
        parseaddr(config.newsletter.sender)[1],
        dry_run,
    )
    try:
        for done, row in enumerate(rows, start=1):
            if progress:
                progress(done, len(rows))
            await run.deliver(row)
    except SMTPUnavailableError as exc:
        _tally(report, store.deliveries(edition_id))
        raise SendInterrupted(report, exc) from None
    finally:
        await sender.close()
    _tally(report, store.deliveries(edition_id))
    return report


def _tally(report: RunReport, rows: Sequence[dict[str, Any]]) -> None:
    """What is left open in the ledger after the run: retries to come, outcomes unknown."""
    report.pending = sum(1 for r in rows if r["status"] == DeliveryStatus.PENDING)
    report.uncertain = sum(1 for r in rows if r["status"] == DeliveryStatus.UNCERTAIN)


@dataclass
class _Run:
    """One send run's edges and running totals; ``deliver`` handles one ledger row."""

    edition: Edition
    store: Store
    sender: Sender
    signer: Signer
    secret: str
    report: RunReport
    ranked: RankResult
    active: dict[int, Subscriber]
    mail_from: str
    dry_run: bool

    async def deliver(self, row: dict[str, Any]) -> None:
        store, report, now = self.store, self.report, self.edition.now
        status = DeliveryStatus(row["status"])
        if status not in (DeliveryStatus.PENDING, DeliveryStatus.UNCERTAIN):
            report.already_done += 1
            return
        sub = self.active.get(row["subscriber_id"])
        if sub is None:  # left the list after this edition was planned
            store.mark(row["id"], DeliveryStatus.SKIPPED, "no longer active", now)
            return
        digest = self.edition.digest(sub, self.ranked)
        if not digest.items and not self.edition.config.digest.send_empty:
            store.mark(row["id"], DeliveryStatus.SKIPPED, "nothing new", now)
            report.skipped_empty += 1
            report.rows.append(_row(sub, 0, "skipped", "nothing new"))
            return
        try:
            composed = self.edition.compose(digest, self.signer, self.secret, row["message_id"])
        except TemplateError:
            raise  # every message would fail alike: stop, leave the rows pending
        except Exception as exc:  # this subscriber's data cannot make a message
            store.mark(row["id"], DeliveryStatus.FAILED, f"cannot build the message: {exc}", now)
            report.failed += 1
            report.rows.append(_row(sub, len(digest.items), "failed", str(exc)))
            return
        if not store.claim(
            row["id"], composed.message_id, [i.paper.id for i in digest.items], now, MAX_ATTEMPTS
        ):
            return  # another process took it, or it left the list a moment ago
        try:
            result = await self.sender.send(
                OutgoingMessage(
                    sub.id,
                    self.mail_from,
                    sub.email,
                    composed.message_id,
                    composed.data,
                    smtputf8=needs_smtputf8(sub.email),
                )
            )
        except SMTPUnavailableError:
            store.release(row["id"], status, now)
            raise
        log.info(
            "%s %s: %s %s",
            composed.message_id,
            sub.email,
            "accepted" if result.ok else "refused",
            result.reply[:200],
        )
        self._record(row, sub, len(digest.items), composed.subject, result)

    def _record(
        self, row: dict[str, Any], sub: Subscriber, papers: int, subject: str, result: SendResult
    ) -> None:
        store, report, now = self.store, self.report, self.edition.now
        reply = f"{result.code or ''} {result.reply}".strip()
        if result.ok:
            store.mark_sent(row["id"], result.reply, now)
            report.sent += 1
            report.rows.append(_row(sub, papers, "written" if self.dry_run else "sent", subject))
        elif result.ambiguous:
            store.mark(row["id"], DeliveryStatus.UNCERTAIN, reply, now)
            report.rows.append(_row(sub, papers, "uncertain", reply))
        elif is_hard_bounce(result):
            store.mark(row["id"], DeliveryStatus.BOUNCED, reply, now)
            store.set_subscriber_status(sub.email, SubscriberStatus.BOUNCED, now)
            report.bounced += 1
            report.rows.append(_row(sub, papers, "bounced", reply))
        elif result.permanent or row["attempts"] + 1 >= MAX_ATTEMPTS:
            if not result.permanent:
                reply = f"gave up after {MAX_ATTEMPTS} attempts: {reply}"
            store.mark(row["id"], DeliveryStatus.FAILED, reply, now)
            report.failed += 1
            report.rows.append(_row(sub, papers, "failed", reply))
        else:  # temporary: the next run tries again
            store.mark(row["id"], DeliveryStatus.PENDING, reply, now)
            report.rows.append(_row(sub, papers, "retry later", reply))


class SendInterrupted(Exception):
    """The server went away mid-run: carries the partial report up to the caller."""

    def __init__(self, report: RunReport, cause: SMTPUnavailableError) -> None:
        super().__init__(str(cause))
        self.report = report
        self.cause = cause


def _row(sub: Subscriber, papers: int, status: str, detail: str) -> dict[str, object]:
    return {"subscriber": sub.email, "papers": papers, "status": status, "detail": detail[:200]}
