"""export.arxiv.org/api/query Atom: primary category, one author element each, pdf link.

``collect`` builds the query (search terms or categories, within a date window), pages
through it sequentially (the fetcher spaces requests 3 s apart on arXiv hosts, one
connection at a time, as arXiv's terms ask) and stops at the last page or ``max_results``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from newsletter.errors import SourceError
from newsletter.sources.base import ParseResult, arxiv_paper, entry_authors, entry_time, parse_feed
from newsletter.sources.fetch import Fetcher, FetchError
from newsletter.sources.ids import doi_from, split_arxiv_id
from newsletter.sources.text import MAX_ABSTRACT, MAX_SUMMARY, MAX_TITLE, clean_text

if TYPE_CHECKING:
    from newsletter.sources import SourceOutcome, SourceSpec


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
    total = parsed.feed.get("opensearch_totalresults")
    result.total = int(total) if str(total or "").isdigit() else None
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
                doi=doi_from(str(entry.get("arxiv_doi") or "")),
                comment=clean_text(entry.get("arxiv_comment"), MAX_SUMMARY) or None,
                journal_ref=clean_text(entry.get("arxiv_journal_ref"), MAX_SUMMARY) or None,
                published=entry_time(entry, "published_parsed", "updated_parsed"),
            )
        )
    return result


def build_query(spec: SourceSpec, now: datetime) -> str:
    """``search_query`` for the spec: its terms or categories, submitted within the window."""
    terms = []
    if spec.query:
        terms.append(f"({spec.query})")
    if spec.categories:
        terms.append("(" + " OR ".join(f"cat:{c}" for c in spec.categories) + ")")
    end = now.astimezone(UTC)
    start = end - timedelta(days=spec.days)
    terms.append(f"submittedDate:[{start:%Y%m%d%H%M} TO {end:%Y%m%d%H%M}]")
    return " AND ".join(terms)


def page_url(base: str, query: str | None, start: int, size: int) -> str:
    parts = urlsplit(base)
    params = dict(parse_qsl(parts.query))
    if query is not None:
        params["search_query"] = query
    params.update(
        start=str(start), max_results=str(size), sortBy="submittedDate", sortOrder="descending"
    )
    return urlunsplit(parts._replace(query=urlencode(params)))


def collect(spec: SourceSpec, fetcher: Fetcher, now: datetime, out: SourceOutcome) -> ParseResult:
    """Every page of the query, one request at a time; a file is one page."""
    if not spec.location.startswith(("http://", "https://")):
        result = fetcher.fetch(spec.location)
        out.requests += result.attempts
        return parse(result.body or b"", spec.name)
    has_query = "search_query=" in spec.location or "id_list=" in spec.location
    query = None if has_query else build_query(spec, now)
    merged = ParseResult()
    start = 0
    while start < spec.max_results:
        size = min(spec.page_size, spec.max_results - start)
        url = page_url(spec.location, query, start, size)
        try:
            fetched = fetcher.fetch(url)
        except FetchError as exc:
            if exc.status == 400 and exc.body:
                parse(exc.body, spec.name)  # raises with arXiv's own explanation
            raise
        out.requests += fetched.attempts
        page = parse(fetched.body or b"", spec.name)
        merged.papers.extend(page.papers)
        merged.skipped += page.skipped
        merged.warnings.extend(page.warnings)
        merged.total = page.total
        got = len(page.papers) + page.skipped
        start += got
        if got < size or (page.total is not None and start >= page.total):
            break
    return merged
