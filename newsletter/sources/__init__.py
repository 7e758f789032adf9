"""Sources: fetch each configured source, parse it into ``Paper`` values, isolate failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources import arxiv_api, arxiv_rss, feed, hf_daily
from newsletter.sources.base import ParseResult
from newsletter.sources.fetch import Fetcher

Parser = Callable[[bytes, str], ParseResult]

PARSERS: dict[str, Parser] = {
    "arxiv-rss": arxiv_rss.parse,
    "arxiv-api": arxiv_api.parse,
    "hf-daily": hf_daily.parse,
    "feed": feed.parse,
}


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source to collect: its name, kind and where its bytes are."""

    name: str
    kind: str
    location: str


@dataclass(slots=True)
class SourceOutcome:
    """What collecting one source gave: papers, or the one error that stopped it."""

    name: str
    kind: str
    papers: list[Paper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None
    seconds: float = 0.0


def collect_one(spec: SourceSpec, fetcher: Fetcher) -> SourceOutcome:
    """Fetch and parse one source; a ``SourceError`` becomes the outcome's error."""
    started = time.perf_counter()
    outcome = SourceOutcome(spec.name, spec.kind)
    try:
        data = fetcher.fetch(spec.location)
        parsed = PARSERS[spec.kind](data, spec.name)
        outcome.papers, outcome.warnings, outcome.skipped = (
            parsed.papers,
            parsed.warnings,
            parsed.skipped,
        )
    except SourceError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a parser bug on odd input must not stop the other sources
        outcome.error = f"source {spec.name!r}: could not be parsed ({exc.__class__.__name__})"
    outcome.seconds = time.perf_counter() - started
    return outcome


def collect_all(specs: Sequence[SourceSpec], fetcher: Fetcher) -> list[SourceOutcome]:
    """Every source in turn; one failing source never stops the others."""
    return [collect_one(spec, fetcher) for spec in specs]
