"""What every source parser returns, and the feedparser front door they share."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources.text import MAX_AUTHORS, MAX_NAME, clean_text


@dataclass(slots=True)
class ParseResult:
    """Papers parsed from one body, plus anything odd worth telling the operator."""

    papers: list[Paper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    total: int | None = None  # what the server says it has in all (paginated APIs)


def parse_feed(data: bytes, source: str) -> tuple[Any, list[str]]:
    """feedparser on bytes; a bozo feed it could still read is a warning, else an error.

    Refused before parsing: HTML pages and documents that declare XML entities (the
    billion-laughs family; no real feed needs them). A truncated document is an error even
    when feedparser salvaged some entries, so a half-fetched feed never passes as complete.
    """
    if _looks_like_html(data):
        raise SourceError(
            f"source {source!r}: got an HTML page, not a feed", hint="check the source URL"
        )
    if _DECLARES_ENTITY.search(data[:65536]):
        raise SourceError(
            f"source {source!r}: the document declares XML entities; refused",
            hint="entity expansion is a known attack; real feeds do not need it",
        )
    # our own clean_text strips markup; feedparser's sanitiser and URI resolver would only
    # double the parse time
    parsed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    warnings: list[str] = []
    if parsed.get("bozo"):
        reason = str(parsed.get("bozo_exception", "malformed feed")).splitlines()[0][:200]
        if _truncated(data, parsed):
            raise SourceError(
                f"source {source!r}: the feed is cut off ({reason})",
                hint="the download was incomplete; the next collect retries",
            )
        if not parsed.entries and not parsed.feed.get("title"):
            raise SourceError(f"source {source!r}: not a readable feed: {reason}")
        warnings.append(f"feed is malformed but readable: {reason}")
    return parsed, warnings


_DECLARES_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ROOT_END = re.compile(rb"</(?:[\w.-]+:)?(?:rss|feed|RDF)\s*>\s*$")


_ROOT_START = re.compile(rb"<(?:[\w.-]+:)?(?:rss|feed|RDF)[\s>]")


def _truncated(data: bytes, parsed: Any) -> bool:
    """A feed whose root element opened but never closed was cut off in transit."""
    if parsed.get("bozo_exception") is None:
        return False
    head = _LEADING_JUNK.sub(b"", data[:8192], count=1)
    return bool(_ROOT_START.match(head)) and not _ROOT_END.search(data.rstrip()[-200:])


_LEADING_JUNK = re.compile(rb"^(?:\xef\xbb\xbf|\s+|<!--.*?-->|<\?xml[^>]*\?>)+", re.DOTALL)


def _looks_like_html(data: bytes) -> bool:
    """An HTML page (error page, login wall) served where a feed was expected."""
    head = _LEADING_JUNK.sub(b"", data[:8192], count=1).lower()
    return head.startswith((b"<!doctype html", b"<html"))


def arxiv_paper(arxiv_id: str, version: int | None, source: str, **fields: Any) -> Paper:
    """A ``Paper`` for an arXiv id, with the canonical abstract and PDF links."""
    return Paper(
        id=arxiv_id,
        version=version,
        source=source,
        url=f"https://arxiv.org/abs/{arxiv_id}",
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}",
        **fields,
    )


def entry_authors(entry: Any) -> tuple[str, ...]:
    """Names from feedparser's ``authors`` list, cleaned and bounded."""
    names = (clean_text(a.get("name"), MAX_NAME) for a in entry.get("authors", []))
    return tuple(n for n in names if n)[:MAX_AUTHORS]


def entry_time(entry: Any, *keys: str) -> datetime | None:
    """The first of feedparser's ``*_parsed`` struct_time fields present, as aware UTC."""
    for key in keys:
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def iso_time(value: object) -> datetime | None:
    """An ISO-8601 timestamp (as in JSON APIs) as aware UTC, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
