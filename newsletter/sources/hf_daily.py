"""Hugging Face daily papers JSON: ``paper.*`` first, the item's top level second."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from newsletter.errors import SourceError
from newsletter.models import Signals
from newsletter.sources.base import ParseResult, arxiv_paper, iso_time
from newsletter.sources.fetch import Fetcher
from newsletter.sources.ids import split_arxiv_id
from newsletter.sources.text import (
    MAX_ABSTRACT,
    MAX_AUTHORS,
    MAX_KEYWORDS,
    MAX_NAME,
    MAX_SUMMARY,
    MAX_TITLE,
    clean_list,
    clean_text,
    safe_url,
)

if TYPE_CHECKING:
    from newsletter.sources import SourceOutcome, SourceSpec


MAX_COUNT = 2**31 - 1  # a count past this is not a real reading (and would not fit the store)


def _int(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    return value if ok else None  # type: ignore[return-value]


def _pick(paper: dict[str, Any], item: dict[str, Any], key: str) -> Any:
    value = paper.get(key)
    return value if value not in (None, "", []) else item.get(key)


def parse(data: bytes, source: str) -> ParseResult:
    try:
        items = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"source {source!r}: not valid JSON: {exc}") from None
    except RecursionError:
        raise SourceError(f"source {source!r}: JSON nested too deeply") from None
    if not isinstance(items, list):
        raise SourceError(f"source {source!r}: expected a JSON array of daily papers")
    result = ParseResult()
    for item in items:
        if not isinstance(item, dict):
            result.skipped += 1
            continue
        raw_paper = item.get("paper")
        paper: dict[str, Any] = raw_paper if isinstance(raw_paper, dict) else {}
        split = split_arxiv_id(str(_pick(paper, item, "id") or ""))
        title = clean_text(_pick(paper, item, "title"), MAX_TITLE)
        if split is None or not title:
            result.skipped += 1
            continue
        arxiv_id, version = split
        authors = _pick(paper, item, "authors") or []
        names = [a.get("name") if isinstance(a, dict) else a for a in authors]
        result.papers.append(
            arxiv_paper(
                arxiv_id,
                version,
                source,
                title=title,
                abstract=clean_text(_pick(paper, item, "summary"), MAX_ABSTRACT),
                authors=clean_list(names, MAX_AUTHORS, MAX_NAME),
                code_url=safe_url(_pick(paper, item, "githubRepo")),
                project_url=safe_url(_pick(paper, item, "projectPage")),
                summary=clean_text(_pick(paper, item, "ai_summary"), MAX_SUMMARY) or None,
                keywords=clean_list(_pick(paper, item, "ai_keywords"), MAX_KEYWORDS, MAX_NAME),
                published=iso_time(_pick(paper, item, "publishedAt")),
                thumbnail_url=safe_url(_pick(item, paper, "thumbnail")),
                organization=_organization(item, paper),
                signals=Signals(
                    upvotes=_int(paper.get("upvotes")),
                    stars=_int(paper.get("githubStars")),
                    comments=_int(item.get("numComments")),
                ),
            )
        )
    return result


def _organization(item: dict[str, Any], paper: dict[str, Any]) -> str | None:
    for holder in (item, paper):
        org = holder.get("organization")
        if isinstance(org, dict):
            name = clean_text(org.get("fullname") or org.get("name"), MAX_NAME)
            if name:
                return name
    return None


def collect(spec: SourceSpec, fetcher: Fetcher, now: datetime, out: SourceOutcome) -> ParseResult:
    """The last ``spec.days`` days of the API (a URL with ``date=`` or a file: as given)."""
    loc = spec.location
    if not loc.startswith(("http://", "https://")) or "date=" in loc:
        fetched = fetcher.fetch(loc)
        out.requests += fetched.attempts
        return parse(fetched.body or b"", spec.name)
    merged = ParseResult()
    seen: set[str] = set()
    today = now.astimezone(UTC).date()
    for back in range(spec.days):
        day = today - timedelta(days=back)
        fetched = fetcher.fetch(f"{loc}{'&' if '?' in loc else '?'}date={day.isoformat()}")
        out.requests += fetched.attempts
        page = parse(fetched.body or b"", spec.name)
        merged.skipped += page.skipped
        merged.warnings.extend(page.warnings)
        for p in page.papers:
            if p.id not in seen:
                seen.add(p.id)
                merged.papers.append(p)
    return merged
