"""``newsletter run``: a long-lived scheduler (APScheduler 3, on asyncio) that collects on a
schedule and sends each subscriber's edition at their hour, in their time zone.

The timer only says "look now"; what is due is decided from the ledger (``SlotRule`` and
``send_edition``'s slot mode), so a missed tick, a restart or three days of downtime all end
the same way: each subscriber's latest edition sent once. APScheduler's coalescing and
unlimited misfire grace make the first tick after downtime run once, not once per missed
tick. SIGTERM stops the run: the message in flight finishes and is recorded, the rest stays
pending for the next tick or run, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.collect import CollectRow, collect, make_fetcher, source_specs
from newsletter.config import Config
from newsletter.deliver import Sender
from newsletter.dkim_sign import DkimSigner
from newsletter.engine import Engine
from newsletter.errors import NewsletterError
from newsletter.models import RunReport
from newsletter.rank.semantic import Encoder
from newsletter.schedule import SlotRule
from newsletter.sending import SendContext, SendInterrupted, send_edition, stop_on_signals
from newsletter.store import Store
from newsletter.subscriptions import Signer

log = logging.getLogger("newsletter.run")
Clock = Callable[[], datetime]


@dataclass
class Runner:
    """The two jobs ``run`` schedules, with their edges injected (tests drive them with a
    clock of their own, no waiting)."""

    config: Config
    store: Store
    connect: Callable[[], Sender]
    signer: Signer
    secret: str
    clock: Clock
    dkim: DkimSigner | None = None
    encoder: Encoder | None = None
    stopping: bool = False
    _engine: Engine | None = None
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def rule(self) -> SlotRule:
        s = self.config.schedule
        return SlotRule(s.send_time(), s.weekly_index())

    async def send_due(self) -> RunReport | None:
        """Send every edition that is due now; None when stopping."""
        async with self._busy:
            if self.stopping:
                return None
            ctx = SendContext(
                self.config,
                self.store,
                self.connect,
                self.signer,
                self.secret,
                self.clock(),
                clock=self.clock,
                dkim=self.dkim,
                encoder=self.encoder,
                slots=self.rule,
                on_engine=self._attach,
            )
            try:
                report = await send_edition(ctx)
            except SendInterrupted as stop:
                log.error("send stopped: %s; the rest waits for the next tick", stop.cause)
                return stop.report
            except NewsletterError as exc:
                log.error("send failed: %s", exc)
                return None
            finally:
                self._engine = None
            if report.sent or report.failed or report.bounced or report.pending:
                log.info(
                    "sent %d, failed %d, bounced %d, pending %d, skipped (nothing new) %d",
                    report.sent,
                    report.failed,
                    report.bounced,
                    report.pending,
                    report.skipped_empty,
                )
            return report

    async def collect(self) -> None:
        """Fetch every source once (sequenced with sending: one job at a time)."""
        async with self._busy:
            if self.stopping:
                return
            now = self.clock()
            # in a thread: fetching takes seconds, and the loop must keep answering signals
            rows = await asyncio.to_thread(self._collect, now)
            for row in rows:
                level = logging.WARNING if row.outcome.error else logging.INFO
                detail = row.outcome.error or f"{len(row.outcome.papers)} items"
                log.log(level, "collect %s: %s (%s)", row.outcome.name, row.status, detail)

    def _collect(self, now: datetime) -> list[CollectRow]:
        fetcher = make_fetcher(self.config)
        try:
            specs = source_specs(self.config)
            return collect(self.store, specs, fetcher, now, self.config.holidays(now.date()))
        finally:
            fetcher.close()

    def _attach(self, engine: Engine) -> None:
        self._engine = engine
        if self.stopping:
            engine.stop()

    def stop(self) -> None:
        """Finish the message in flight, start nothing new."""
        self.stopping = True
        if self._engine is not None:
            self._engine.stop()


def build_scheduler(runner: Runner, config: Config, start: datetime) -> AsyncIOScheduler:
    """The jobs: a send tick every ``tick_minutes`` (first one at ``start``, the catch-up)
    and a collect at each ``collect_at`` time in its zone (plus one at start)."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    s = config.schedule
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    scheduler.add_job(runner.collect, "date", run_date=start, id="collect-now", **common)
    scheduler.add_job(
        runner.send_due,
        IntervalTrigger(minutes=s.tick_minutes, timezone="UTC"),
        next_run_time=start + timedelta(seconds=1),
        id="send",
        name="send due editions",
        **common,
    )
    for i, (at, zone) in enumerate(s.collect_times()):
        scheduler.add_job(
            runner.collect,
            CronTrigger(hour=at.hour, minute=at.minute, timezone=zone),
            id=f"collect-{i}",
            name=f"collect at {at:%H:%M} {zone.key}",
            **common,
        )
    return scheduler


async def run_forever(runner: Runner, config: Config) -> None:
    """Run until SIGTERM or SIGINT; then finish what is in flight and return."""
    stopped = asyncio.Event()

    def on_signal() -> None:
        log.info("stopping: finishing the message in flight")
        runner.stop()
        stopped.set()

    with stop_on_signals(on_signal):
        # APScheduler keeps wall-clock time; the runner's own clock decides what is due
        scheduler = build_scheduler(runner, config, datetime.now(UTC))
        scheduler.start()
        try:
            await stopped.wait()
        finally:
            scheduler.pause()  # no new job; the one in flight ends (its engine was stopped)
            async with runner._busy:
                pass
            scheduler.shutdown(wait=False)
