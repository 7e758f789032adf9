"""Collect every configured source into the store: the ``collect`` stage of the pipeline.

Per source: load what the last collect left (validators, items hash), fetch and parse it,
merge its papers, then record the new state. A failing source records its error and keeps
its previous state, so nothing already stored is lost and the next collect retries.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.exc import OperationalError

from newsletter.config import Config
from newsletter.sources import SourceOutcome, SourceSpec, collect_one
from newsletter.sources.fetch import DEFAULT_SPACING, Fetcher, HttpFetcher
from newsletter.store import Store
from newsletter.store.papers import MergeCounts

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CollectRow:
    """One source's line in the collect report."""

    outcome: SourceOutcome
    counts: MergeCounts = field(default_factory=MergeCounts)

    @property
    def status(self) -> str:
        o = self.outcome
        if o.error:
            return "error"
        if not o.fetched:
            return "not modified"
        return str(o.day) if o.day is not None else "ok"

    def as_dict(self) -> dict[str, object]:
        o = self.outcome
        return {
            "source": o.name,
            "kind": o.kind,
            "fetched": o.fetched,
            "status": self.status,
            "parsed": len(o.papers),
            "new": self.counts.new,
            "updated": self.counts.updated,
            "skipped": o.skipped + self.counts.skipped,
            "warnings": o.warnings,
            "error": o.error,
            "requests": o.requests,
            "seconds": round(o.seconds, 3),
        }


def source_specs(config: Config) -> list[SourceSpec]:
    return [
        SourceSpec(
            s.name,
            s.kind,
            config.source_location(s),
            include_cross=s.include_cross,
            query=s.query,
            categories=tuple(s.categories),
            days=s.days,
            page_size=s.page_size,
            max_results=s.max_results,
        )
        for s in config.sources
    ]


def make_fetcher(config: Config) -> HttpFetcher:
    """The real HTTP edge, configured; the caller closes it."""
    f = config.fetch
    contact = f.contact or config.newsletter.sender
    return HttpFetcher(
        timeout=f.timeout,
        max_bytes=f.max_bytes,
        contact=contact,
        retries=f.retries,
        max_wait=f.max_retry_wait,
        default_spacing=f.min_interval,
        spacing={**DEFAULT_SPACING, **f.host_intervals},
    )


def collect(
    store: Store,
    specs: Sequence[SourceSpec],
    fetcher: Fetcher,
    now: datetime,
    holidays: Collection[date] = (),
) -> list[CollectRow]:
    """Fetch every source and merge what parsed; a failing source stores and stops nothing."""
    rows = []
    for spec in specs:
        outcome = collect_one(spec, fetcher, now, store.source_state(spec.name), holidays)
        row = CollectRow(outcome)
        if outcome.error is None:
            try:
                if outcome.papers:
                    row.counts = store.merge_papers(outcome.papers, now)
                store.save_source_state(spec.name, outcome.state, row.status, now)
            except OperationalError:
                raise  # the database itself is unusable (locked, full): stop the run
            except Exception as exc:
                # data the store cannot hold: this source's merge rolled back, the others go on
                outcome.error = f"source {spec.name!r}: could not be stored ({exc})"[:300]
                outcome.papers, row.counts = [], MergeCounts()
        if outcome.error is not None:
            store.source_failed(spec.name, outcome.error, now)
        log.info(
            "source %s: %s, %d parsed, %d new, %d updated%s",
            outcome.name,
            row.status,
            len(outcome.papers),
            row.counts.new,
            row.counts.updated,
            f": {outcome.error}" if outcome.error else "",
        )
        rows.append(row)
    return rows
