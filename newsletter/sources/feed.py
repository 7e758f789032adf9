"""Any RSS or Atom feed (bioRxiv, journals, blogs) through feedparser."""

from __future__ import annotations

from newsletter.models import Paper
from newsletter.sources.base import ParseResult, entry_authors, entry_time, parse_feed
from newsletter.sources.ids import canonical_id, doi_from, split_arxiv_id
from newsletter.sources.text import (
    MAX_ABSTRACT,
    MAX_TITLE,
    clean_text,
    safe_url,
)


def parse(data: bytes, source: str) -> ParseResult:
    parsed, warnings = parse_feed(data, source)
    result = ParseResult(warnings=warnings)
    for entry in parsed.entries:
        link = safe_url(entry.get("link"))
        doi = None
        for key in ("prism_doi", "dc_identifier", "id"):
            doi = doi_from(str(entry.get(key) or ""))
            if doi:
                break
        arxiv = split_arxiv_id(link or "") or split_arxiv_id(str(entry.get("id") or ""))
        pid = canonical_id(arxiv=arxiv[0] if arxiv else None, doi=doi, link=link)
        title = clean_text(entry.get("title"), MAX_TITLE)
        if pid is None or not title:
            result.skipped += 1
            continue
        result.papers.append(
            Paper(
                id=pid,
                version=arxiv[1] if arxiv else None,
                source=source,
                title=title,
                abstract=clean_text(entry.get("summary"), MAX_ABSTRACT),
                authors=entry_authors(entry),
                categories=tuple(t.term for t in entry.get("tags", []) if t.get("term"))[:20],
                url=link or _fallback_url(arxiv[0] if arxiv else None, doi),
                announce_type="new",
                doi=doi,
                published=entry_time(entry, "published_parsed", "updated_parsed"),
            )
        )
    return result


def _fallback_url(arxiv_id: str | None, doi: str | None) -> str | None:
    """When the item's own link is unusable: the arXiv page, else the DOI resolver."""
    if arxiv_id:
        return f"https://arxiv.org/abs/{arxiv_id}"
    return f"https://doi.org/{doi}" if doi else None
