"""export.arxiv.org/api/query Atom: primary category, one author element each, pdf link."""

from __future__ import annotations

from newsletter.errors import SourceError
from newsletter.sources.base import ParseResult, arxiv_paper, entry_authors, entry_time, parse_feed
from newsletter.sources.ids import split_arxiv_id
from newsletter.sources.text import MAX_ABSTRACT, MAX_TITLE, clean_text


def parse(data: bytes, source: str) -> ParseResult:
    parsed, warnings = parse_feed(data, source)
    entries = parsed.entries
    if len(entries) == 1 and str(entries[0].get("title", "")).strip() == "Error":
        detail = clean_text(entries[0].get("summary"), 200)
        raise SourceError(
            f"source {source!r}: the arXiv API answered with an error: {detail}",
            hint="check the query in the source URL",
        )
    result = ParseResult(warnings=warnings)
    for entry in entries:
        split = split_arxiv_id(entry.get("id", ""))
        if split is None:
            result.skipped += 1
            continue
        arxiv_id, version = split
        primary = (entry.get("arxiv_primary_category") or {}).get("term")
        cats = [t.term for t in entry.get("tags", []) if t.get("term")]
        if primary:
            cats = [primary] + [c for c in cats if c != primary]
        result.papers.append(
            arxiv_paper(
                arxiv_id,
                version,
                source,
                title=clean_text(entry.get("title"), MAX_TITLE),
                abstract=clean_text(entry.get("summary"), MAX_ABSTRACT),
                authors=entry_authors(entry),
                categories=tuple(cats),
                announce_type="new",
                published=entry_time(entry, "published_parsed", "updated_parsed"),
            )
        )
    return result
