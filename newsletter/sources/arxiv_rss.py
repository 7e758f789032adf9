"""rss.arxiv.org RSS 2.0 / Atom: announce types, comma-joined authors, prefixed abstracts."""

from __future__ import annotations

import re
from typing import Any

from newsletter.sources.base import ParseResult, arxiv_paper, entry_authors, entry_time, parse_feed
from newsletter.sources.ids import split_arxiv_id
from newsletter.sources.text import (
    MAX_ABSTRACT,
    MAX_AUTHORS,
    MAX_NAME,
    MAX_TITLE,
    clean_text,
    decode_tex,
)

_PREFIX = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*(?P<type>[\w-]+)\s*Abstract:\s*", re.IGNORECASE
)
ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")


def split_authors(value: str) -> tuple[str, ...]:
    """``dc:creator`` is one string: "A, B, and C" -> ("A", "B", "C")."""
    parts = re.split(r",\s*(?:and\s+)?|\s+and\s+", value)
    names = [clean_text(decode_tex(p), MAX_NAME) for p in parts]
    return tuple(n for n in names if n)[:MAX_AUTHORS]


def _authors(entry: Any) -> tuple[str, ...]:
    """RSS has one comma-joined ``dc:creator``; the Atom flavour may list authors one by one."""
    listed = entry.get("authors") or []
    if len(listed) > 1:
        return tuple(decode_tex(a) for a in entry_authors(entry))
    return split_authors(str(entry.get("author", "")))


def parse(data: bytes, source: str) -> ParseResult:
    parsed, warnings = parse_feed(data, source)
    result = ParseResult(warnings=warnings)
    for entry in parsed.entries:
        split = split_arxiv_id(entry.get("id", "")) or split_arxiv_id(entry.get("link", ""))
        if split is None:
            result.skipped += 1
            continue
        arxiv_id, version = split
        raw = str(entry.get("summary", ""))
        m = _PREFIX.match(raw)
        announce = entry.get("arxiv_announce_type") or (m.group("type") if m else None)
        abstract = raw[m.end() :] if m else raw
        result.papers.append(
            arxiv_paper(
                arxiv_id,
                version,
                source,
                title=clean_text(entry.get("title"), MAX_TITLE),
                abstract=clean_text(abstract, MAX_ABSTRACT),
                authors=_authors(entry),
                categories=tuple(t.term for t in entry.get("tags", []) if t.get("term")),
                announce_type=(announce or "new").lower(),
                published=entry_time(entry, "published_parsed", "updated_parsed"),
            )
        )
    return result
