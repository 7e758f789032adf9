"""Sources: fetch each configured source, parse it into ``Paper`` values, isolate failures.

Each kind knows which requests it needs (one conditional GET for a feed, several dated
requests for Hugging Face, pages for the arXiv API) and how to parse a body; a failure of
any kind in one source becomes that source's error and never stops the others.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.schedule import FeedDay, classify, previous_announcement
from newsletter.sources import arxiv_api, arxiv_rss, feed, hf_daily
from newsletter.sources.base import ParseResult
from newsletter.sources.fetch import Fetcher, Validators


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source to collect: its name, kind, where its bytes are, and kind options."""

    name: str
    kind: str
    location: str
    include_cross: bool = True
    query: str | None = None
    categories: tuple[str, ...] = ()
    days: int = 2
    page_size: int = 100
    max_results: int = 1000


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the last successful collect of a source left behind."""

    etag: str | None = None
    last_modified: str | None = None
    items_hash: str | None = None
    announcement_at: datetime | None = None


@dataclass(slots=True)
class SourceOutcome:
    """What collecting one source gave: papers, or the one error that stopped it."""

    name: str
    kind: str
    papers: list[Paper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    fetched: bool = True
    day: FeedDay | None = None
    error: str | None = None
    seconds: float = 0.0
    requests: int = 0
    state: SourceState | None = None


def items_hash(papers: Sequence[Paper]) -> str:
    ids = sorted(f"{p.id}v{p.version}" for p in papers)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


def _single(
    spec: SourceSpec,
    fetcher: Fetcher,
    state: SourceState,
    out: SourceOutcome,
    parse: Callable[[bytes, str], ParseResult],
) -> ParseResult | None:
    """One conditional GET; None when the server says nothing changed."""
    result = fetcher.fetch(spec.location, Validators(state.etag, state.last_modified))
    out.requests += result.attempts
    if result.moved_to:
        out.warnings.append(f"moved permanently to {result.moved_to}; update the config")
    # a 304 may leave a validator out: the one we hold still stands
    out.state = replace(
        state,
        etag=result.etag or state.etag,
        last_modified=result.last_modified or state.last_modified,
    )
    if result.body is None:
        out.fetched = False
        return None
    return parse(result.body, spec.name)


def _collect(
    spec: SourceSpec,
    fetcher: Fetcher,
    now: datetime,
    state: SourceState,
    holidays: Collection[date],
    out: SourceOutcome,
) -> ParseResult | None:
    if spec.kind == "arxiv-rss":
        parsed = _single(spec, fetcher, state, out, arxiv_rss.parse)
        if parsed is not None:
            if not spec.include_cross:
                kept = [p for p in parsed.papers if p.announce_type not in ("cross",)]
                parsed.skipped += len(parsed.papers) - len(kept)
                parsed.papers = kept
            digest = items_hash(parsed.papers)
            out.day = classify(
                now=now,
                holidays=holidays,
                item_count=len(parsed.papers),
                items_hash=digest,
                previous_hash=state.items_hash,
                previous_announcement_at=state.announcement_at,
            )
            # a stale feed stays stale until the items change: keep the announcement the
            # items were first seen under, so the next fetch is judged against it too
            seen_under = (
                state.announcement_at
                if out.day is FeedDay.STALE
                else previous_announcement(now, holidays)
            )
            out.state = replace(out.state or state, items_hash=digest, announcement_at=seen_under)
        return parsed
    if spec.kind == "feed":
        return _single(spec, fetcher, state, out, feed.parse)
    if spec.kind == "hf-daily":
        return hf_daily.collect(spec, fetcher, now, out)
    if spec.kind == "arxiv-api":
        return arxiv_api.collect(spec, fetcher, now, out)
    raise SourceError(f"unknown source kind {spec.kind!r}")


def collect_one(
    spec: SourceSpec,
    fetcher: Fetcher,
    now: datetime,
    state: SourceState | None = None,
    holidays: Collection[date] = (),
) -> SourceOutcome:
    """Fetch and parse one source; any failure becomes the outcome's error."""
    started = time.perf_counter()
    out = SourceOutcome(spec.name, spec.kind)
    try:
        parsed = _collect(spec, fetcher, now, state or SourceState(), holidays, out)
        if parsed is not None:
            out.papers, out.skipped = parsed.papers, parsed.skipped
            out.warnings.extend(parsed.warnings)
        if out.day is FeedDay.ANOMALY:
            out.warnings.append("no items although arXiv announced today")
        elif out.day is FeedDay.STALE:
            out.warnings.append("the same items as the previous announcement (stale feed?)")
    except SourceError as exc:
        out.error = str(exc)
    except Exception as exc:  # a parser bug on odd input must not stop the other sources
        out.error = f"source {spec.name!r}: could not be parsed ({exc.__class__.__name__})"
    if out.error:
        out.papers, out.state = [], None
    out.seconds = time.perf_counter() - started
    return out
