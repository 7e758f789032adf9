"""Several send workers on one edition (``send --workers N``, on one host or several
against one PostgreSQL).

The parent plans the edition once; each worker then reserves batches of open rows with a
lease (``reserve_open``: FOR UPDATE SKIP LOCKED on PostgreSQL), ranks and renders only its
batch, and sends it. The claim before each message still decides who sends a row, so two
workers never send the same one. A worker that dies leaves its rows leased: when the
lease runs out, the others take them over (rows it had mid-send become uncertain and are
resent once, with the same Message-ID, as after any crash). A worker stops when no row is
open and none is held by another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from newsletter.engine import Engine
from newsletter.models import RunReport
from newsletter.pipeline import Edition, edition_date_for
from newsletter.sending import (
    SendContext,
    SendInterrupted,
    _close,
    _jobs,
    _plan,
    _Tally,
    make_engine,
    stop_on_signals,
)
from newsletter.store import Store

log = logging.getLogger(__name__)
BATCH = 100  # rows a worker reserves at a time: small enough to spread an edition evenly


def plan_edition(ctx: SendContext) -> tuple[int, RunReport]:
    """The parent's part: the edition row and a pending row per due subscriber (idempotent:
    a parent on another host planning the same edition adds nothing)."""
    # only the date is needed here: no candidates loaded, nothing ranked
    day = edition_date_for(ctx.now, ctx.config.newsletter.timezone)
    edition_id = ctx.store.edition(day, ctx.now)
    _plan(ctx.store, day, ctx.now, edition_id)
    return edition_id, RunReport(day, dry_run=ctx.dry_run)


async def work_edition(ctx: SendContext) -> RunReport:
    """One worker: reserve, rank, render and send batches until nothing is left to do."""
    config, store = ctx.config, ctx.store
    settings = ctx.settings or config.delivery.settings()
    edition = Edition(config, store, ctx.now, encoder=ctx.encoder, dkim=ctx.dkim)
    edition_id = store.edition(edition.date, ctx.now)
    report = RunReport(edition.date)
    tally = _Tally(report, 0, ctx.progress, False)
    lease = timedelta(seconds=settings.lease_seconds)
    mail_from = config.envelope_from()
    started = time.perf_counter()
    engine: Engine | None = None
    stopping = False
    held: list[int] = []

    def stop() -> None:
        nonlocal stopping
        stopping = True
        if engine is not None:
            engine.stop()

    def reserve(_after: int) -> list[dict[str, object]]:
        now = ctx.clock()
        # rows tried since this run began wait for the next run, as with one process: a
        # 4xx is not retried by another worker at once
        batch = store.reserve_open(edition_id, now, now + lease, BATCH, ctx.now)
        held.extend(int(str(r["id"])) for r in batch)
        return batch

    try:
        with stop_on_signals(stop, ctx.handle_signals):
            while not stopping:
                store.recover_interrupted(edition_id, ctx.clock(), exclusive=False)
                engine = make_engine(ctx, settings, tally)
                try:
                    await engine.run(
                        _jobs(ctx, settings, edition, edition_id, mail_from, engine, tally, reserve)
                    )
                finally:  # what this worker reserved and did not send goes back at once
                    store.release_reserved(held)
                    held.clear()
                if engine.fatal is not None:
                    raise SendInterrupted(report, engine.fatal)
                if engine.stopping:
                    break
                until = store.held_until(edition_id, ctx.clock())
                if until is None:
                    break
                # another worker holds rows: wait for them to finish or for the lease to end
                wait = max(0.1, min((until - ctx.clock()).total_seconds() + 0.1, 0.5))
                await asyncio.sleep(wait)
    finally:
        report.seconds = time.perf_counter() - started
        _close(report, store.status_counts(edition_id))  # what is left open, for the parent
        report.stopped = stopping
    return report


def run_workers(
    n: int, config_path: Path, now: datetime, extra_env: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """Start ``n`` worker processes of this CLI on the edition and wait for them; SIGTERM
    and SIGINT are passed on (each finishes its message in flight). Returns their reports."""
    command = [
        sys.executable,
        "-m",
        "newsletter",
        "--config",
        str(config_path),
        "--now",
        now.isoformat(),
        "send",
        "--worker",
        "--share",
        str(n),
        "--json",
    ]
    env = {**os.environ, **(extra_env or {})}
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)
    ]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = [signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        outputs = [p.communicate()[0] for p in procs]
    finally:
        for s, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
            signal.signal(s, handler)
    reports: list[dict[str, object]] = []
    for p, text in zip(procs, outputs, strict=True):
        try:
            reports.append({"exit": p.returncode, **json.loads(text.strip().splitlines()[-1])})
        except (ValueError, IndexError):
            reports.append({"exit": p.returncode})
    return reports


def totals(
    store: Store, edition_id: int, report: RunReport, workers: Sequence[dict[str, object]]
) -> RunReport:
    """The parent's report: the workers' counts, and what the ledger holds at the end."""
    for w in workers:
        for key in ("sent", "failed", "bounced", "skipped_empty"):
            value = w.get(key)
            if isinstance(value, int):
                setattr(report, key, getattr(report, key) + value)
        seconds = w.get("seconds")
        if isinstance(seconds, (int, float)):
            report.seconds = max(report.seconds, float(seconds))
    _close(report, store.status_counts(edition_id))
    report.stopped = any(w.get("stopped") for w in workers)
    return report
