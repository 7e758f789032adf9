"""Send one edition: plan the ledger, compose page by page, hand the messages to the engine.

Memory stays flat with the list: subscribers are planned and composed a page at a time, the
engine holds only a few messages ahead of its connections, and the report keeps counts plus
a bounded sample of rows. A rerun sends every row still open and nothing already sent.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from newsletter.config import Config
from newsletter.deliver import Sender
from newsletter.dkim_sign import DkimSigner
from newsletter.engine import DeliverySettings, Engine, Job, Outcome
from newsletter.errors import SMTPUnavailableError, TemplateError
from newsletter.mail import needs_smtputf8
from newsletter.models import DeliveryStatus, OutgoingMessage, RunReport, SubscriberStatus
from newsletter.pace import RateLimiter
from newsletter.pipeline import Edition, edition_date_for, is_due
from newsletter.rank.semantic import Encoder
from newsletter.schedule import SlotRule, When
from newsletter.store import Store
from newsletter.subscriptions import Signer

PAGE = 500
ROWS_KEPT = 200  # every row up to this many, then only problems, up to PROBLEMS_KEPT
PROBLEMS_KEPT = 1000
log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class SendContext:
    """The edges and options of one send run (what the CLI builds)."""

    config: Config
    store: Store
    connect: Callable[[], Sender]
    signer: Signer
    secret: str
    now: datetime  # the edition's moment: which day, which papers
    dry_run: bool = False
    progress: Progress | None = None
    encoder: Encoder | None = None
    clock: Clock = wall_clock  # when things happen: ledger stamps, leases, the hourly cap
    exclusive: bool = True  # the caller holds the run lock
    dkim: DkimSigner | None = None
    settings: DeliverySettings | None = None
    handle_signals: bool = False  # SIGTERM/SIGINT stop the run gracefully (CLI only)
    # the scheduler's mode: each subscriber's edition at their own hour and weekday, in their
    # time zone, in the edition of their local date; every edition with work left is sent
    slots: SlotRule | None = None
    on_engine: Callable[[Engine], None] | None = None  # lets a caller stop the run


class SendInterrupted(Exception):
    """The server could not be reached: carries the partial report up to the caller."""

    def __init__(self, report: RunReport, cause: SMTPUnavailableError) -> None:
        super().__init__(str(cause))
        self.report = report
        self.cause = cause


async def send_edition(ctx: SendContext) -> RunReport:
    """Deliver the edition at ``ctx.now`` to every due subscriber not yet served; resumable.

    Raises ``SendInterrupted`` (with the report so far) when the server cannot be reached;
    the rows not reached stay pending for the next run.
    """
    config, store = ctx.config, ctx.store
    settings = ctx.settings or config.delivery.settings()
    if ctx.dry_run:  # one writer, no pacing: nothing leaves the machine
        settings = DeliverySettings(connections=1, max_attempts=settings.max_attempts)
    if ctx.slots is not None:
        for eid, _ in store.open_editions():  # a killed run's rows first: resent, not lost
            store.recover_interrupted(eid, ctx.clock(), exclusive=ctx.exclusive)
        _plan_slots(store, ctx.slots, ctx.now)
        work = store.open_editions()
        if not work:  # the common tick: nothing due, nothing to rank
            return RunReport(edition_date_for(ctx.now, config.newsletter.timezone), ctx.dry_run)
    edition = Edition(config, store, ctx.now, encoder=ctx.encoder, dkim=ctx.dkim)
    report = RunReport(edition.date, dry_run=ctx.dry_run)
    if ctx.slots is None:
        editions = [(store.edition(edition.date, ctx.now), edition)]
    else:
        editions = [(eid, edition.on(day)) for eid, day in work]
    for eid, _ in editions:
        store.recover_interrupted(eid, ctx.clock(), exclusive=ctx.exclusive)
    if ctx.slots is None:
        _plan(store, edition.date, edition.now, editions[0][0])
    counts = _counts(store, editions)
    open_rows = counts.get("pending", 0) + counts.get("uncertain", 0)
    report.already_done = sum(counts.values()) - open_rows
    tally = _Tally(report, open_rows, ctx.progress, ctx.dry_run)
    engine = make_engine(ctx, settings, tally)
    if ctx.on_engine is not None:
        ctx.on_engine(engine)
    mail_from = config.envelope_from()
    started = time.perf_counter()
    try:
        with stop_on_signals(engine.stop, ctx.handle_signals):
            await engine.run(
                job
                for eid, ed in editions
                for job in _jobs(ctx, settings, ed, eid, mail_from, engine, tally)
            )
    finally:
        report.seconds = time.perf_counter() - started
        _close(report, _counts(store, editions))
    report.stopped = engine.stopping and engine.fatal is None
    if engine.fatal is not None:
        raise SendInterrupted(report, engine.fatal)
    return report


def _plan(store: Store, day: date, now: datetime, edition_id: int) -> None:
    """A pending row for each active subscriber due this edition, a page at a time."""
    for page in store.subscriber_pages(SubscriberStatus.ACTIVE):
        weekly = [s.id for s in page if s.frequency == "weekly"]
        last_sent = store.last_sent_dates(weekly) if weekly else {}
        due = [s.id for s in page if is_due(s, day, last_sent.get(s.id))]
        store.plan_deliveries(edition_id, due, now)


def _plan_slots(store: Store, rule: SlotRule, now: datetime) -> None:
    """A pending row for each active subscriber whose slot has come and whose edition for it
    is not in the ledger yet, in the edition of their local date; older rows still pending
    for them are superseded (one catch-up edition after downtime, not a backlog).

    Subscribers who share a time zone, frequency, hour and weekday share their slot, so it
    is worked out once per kind per tick, not once per subscriber."""
    slots: dict[When, date] = {}
    bad: set[When] = set()
    for page in store.schedule_pages():
        due: dict[date, list[int]] = {}
        for sid, when, last, joined in page:
            if when in bad:
                continue
            try:
                day = rule.owed(when, last, joined, now, slots)
            except (ValueError, KeyError) as exc:  # one bad row must not stop the list
                log.error("cannot schedule %s: %s; skipped this tick", when, exc)
                bad.add(when)
                continue
            if day is not None:
                due.setdefault(day, []).append(sid)
        for day, ids in sorted(due.items()):
            store.supersede_open(ids, day, now)
            store.plan_deliveries(store.edition(day, now), ids, now)


def _counts(store: Store, editions: Sequence[tuple[int, Edition]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for eid, _ in editions:
        for status, n in store.status_counts(eid).items():
            total[status] = total.get(status, 0) + n
    return total


@contextmanager
def stop_on_signals(stop: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call ``stop`` (on the running loop) instead of
    killing the process: what is in flight finishes and is recorded."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if enabled else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def make_engine(ctx: SendContext, settings: DeliverySettings, tally: _Tally) -> Engine:
    """The sending engine for one run: this context's connections and clock, the report's
    tally, and the rate caps (none for a dry run: nothing leaves the machine)."""
    limiter = None if ctx.dry_run else _limiter(ctx.store, settings, ctx.clock)
    return Engine(ctx.store, ctx.connect, settings, ctx.clock, tally.settled, limiter=limiter)


def _limiter(store: Store, settings: DeliverySettings, clock: Clock) -> RateLimiter:
    recent: list[float] = []
    if settings.max_per_hour:
        wall = clock()
        mono = time.monotonic()
        recent = [
            mono - (wall - t).total_seconds() for t in store.sent_since(wall - timedelta(hours=1))
        ]
    return RateLimiter.for_caps(settings.max_per_second, settings.max_per_hour, recent)


def _jobs(
    ctx: SendContext,
    settings: DeliverySettings,
    edition: Edition,
    edition_id: int,
    mail_from: str,
    engine: Engine,
    tally: _Tally,
    fetch: Callable[[int], list[dict[str, Any]]] | None = None,
) -> Iterator[Job]:
    """Open rows a page at a time: rank the page together, mark the rows that will not be
    sent, then compose and yield the rest one by one (composing is lazy). ``fetch`` gives
    the next page after a row id (a worker's: its next reserved batch)."""
    store, config = ctx.store, ctx.config
    after = 0
    while not engine.stopping:
        rows = fetch(after) if fetch is not None else store.open_deliveries(edition_id, after, PAGE)
        if not rows:
            return
        after = rows[-1]["id"]
        subs = store.subscribers_by_id([r["subscriber_id"] for r in rows])
        active = {
            i: s for i, s in subs.items() if s.status is SubscriberStatus.ACTIVE and not s.paused
        }
        ranked = edition.rank(list(active.values()))
        gone, empty, todo = [], [], []
        for row in rows:
            if row["status"] == "pending" and row["attempts"] >= settings.max_attempts:
                detail = f"gave up after {row['attempts']} attempts: {row['last_reply']}"
                store.mark(row["id"], DeliveryStatus.FAILED, detail, ctx.clock())
                known = subs.get(row["subscriber_id"])
                tally.failed(known.email if known else str(row["subscriber_id"]), 0, detail)
                continue
            sub = active.get(row["subscriber_id"])
            if sub is None:  # left the list after this edition was planned
                gone.append(row["id"])
                continue
            digest = edition.digest(sub, ranked)
            if not digest.items and not config.digest.send_empty:
                empty.append(row["id"])
                tally.skipped(sub.email)
                continue
            todo.append((row, digest))
        now = ctx.clock()
        if gone:
            store.skip(gone, "no longer active", now)
            tally.count_done(len(gone))
        if empty:
            store.skip(empty, "nothing new", now)
        for row, digest in todo:
            sub = digest.subscriber
            try:
                composed = edition.compose(
                    digest, ctx.signer, ctx.secret, row["message_id"], sent_at=ctx.clock()
                )
            except TemplateError:
                raise  # every message would fail alike: stop, leave the rows pending
            except Exception as exc:  # this subscriber's data cannot make a message
                detail = f"cannot build the message: {exc}"
                store.mark(row["id"], DeliveryStatus.FAILED, detail, ctx.clock())
                tally.failed(sub.email, len(digest.items), detail)
                continue
            yield Job(
                delivery_id=row["id"],
                edition_id=edition_id,
                subscriber_id=sub.id,
                message=OutgoingMessage(
                    sub.id,
                    mail_from,
                    sub.email,
                    composed.message_id,
                    composed.data,
                    smtputf8=needs_smtputf8(sub.email) or needs_smtputf8(mail_from),
                ),
                paper_ids=tuple(i.paper.id for i in digest.items),
                previous=DeliveryStatus(row["status"]),
                attempts=row["attempts"],
                label=f"{len(digest.items)}\t{composed.subject}",
            )


class _Tally:
    """Turns engine outcomes into the report and the progress bar."""

    def __init__(
        self, report: RunReport, total: int, progress: Progress | None, dry_run: bool
    ) -> None:
        self.report, self.total, self.progress, self.dry_run = report, total, progress, dry_run
        self.done = 0

    def count_done(self, n: int = 1) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)

    def _row(self, email: str, papers: int, status: str, detail: str) -> None:
        rows = self.report.rows
        problem = status not in ("sent", "written", "skipped")
        if len(rows) < ROWS_KEPT or (problem and len(rows) < PROBLEMS_KEPT):
            rows.append(
                {"subscriber": email, "papers": papers, "status": status, "detail": detail[:200]}
            )
        else:
            self.report.rows_omitted += 1

    def skipped(self, email: str) -> None:
        self.report.skipped_empty += 1
        self._row(email, 0, "skipped", "nothing new")
        self.count_done()

    def failed(self, email: str, papers: int, detail: str) -> None:
        self.report.failed += 1
        self._row(email, papers, "failed", detail)
        self.count_done()

    def settled(self, job: Job, outcome: Outcome) -> None:
        report = self.report
        papers = len(job.paper_ids)
        status, detail = outcome.status, outcome.detail
        if status == "sent":
            report.sent += 1
            subject = job.label.partition("\t")[2]
            self._row(job.message.recipient, papers, "written" if self.dry_run else "sent", subject)
        elif status == "failed":
            report.failed += 1
            self._row(job.message.recipient, papers, status, detail)
        elif status == "bounced":
            report.bounced += 1
            self._row(job.message.recipient, papers, status, detail)
        elif status == "uncertain":  # counted from the ledger at the end (``_close``)
            self._row(job.message.recipient, papers, status, detail)
        elif status == "retry":
            self._row(job.message.recipient, papers, "retry later", detail)
        elif status == "left":
            self._row(job.message.recipient, papers, "not sent", detail)
        self.count_done()


def _close(report: RunReport, counts: dict[str, Any]) -> None:
    """What is left open in the ledger after the run: retries to come, outcomes unknown."""
    report.pending = int(counts.get("pending", 0))
    report.uncertain = int(counts.get("uncertain", 0))


def smtp_connect(config: Config) -> Callable[[], Sender]:
    """A factory of connections to the configured server, one per engine worker."""
    from newsletter.deliver import SMTPSender

    smtp = config.smtp
    password = config.smtp_password()

    def connect() -> Sender:
        return SMTPSender(
            smtp.host,
            smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=password,
            timeout=smtp.timeout,
            data_timeout=smtp.data_timeout,
            max_per_connection=config.delivery.max_per_connection,
            ca_file=str(config.resolve(smtp.ca_file)) if smtp.ca_file else None,
        )

    return connect


def dkim_signer(config: Config) -> DkimSigner | None:
    key = config.dkim_key()
    if key is None:
        return None
    d = config.dkim
    assert d.selector and d.domain  # checked when the config loads
    return DkimSigner(d.selector, d.domain, key, d.headers)
