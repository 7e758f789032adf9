"""Merge rules: the same paper from several sources is one record; the richest field wins."""

from __future__ import annotations

from typing import Any

from newsletter.models import Paper


def _longer(old: str | None, new: str | None) -> str | None:
    if not new:
        return old
    if not old:
        return new
    return new if len(new) > len(old) else old


def _union(old: list[str], new: tuple[str, ...]) -> list[str]:
    seen = dict.fromkeys(old)
    seen.update(dict.fromkeys(new))
    return list(seen)


def merge_paper(existing: dict[str, Any] | None, paper: Paper) -> dict[str, Any]:
    """The stored row's new field values after ``paper`` (from one source) is seen.

    ``existing`` is the current row as a dict of the columns below (lists decoded), or None.
    A newer arXiv version (a ``replace``) brings its abstract and title in even when shorter.
    """
    fresh = {
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "url": paper.url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url,
        "project_url": paper.project_url,
        "summary": paper.summary,
        "keywords": list(paper.keywords),
        "version": paper.version,
        "published_at": paper.published,
        "doi": paper.doi,
        "comment": paper.comment,
        "journal_ref": paper.journal_ref,
        "thumbnail_url": paper.thumbnail_url,
        "organization": paper.organization,
    }
    if existing is None:
        return fresh
    known = existing["version"]
    newer = paper.version is not None and known is not None and paper.version > known
    # a copy without a version (e.g. Hugging Face) says nothing about which text is current,
    # so against a known version it brings no text, like an older one
    older = known is not None and (paper.version is None or paper.version < known)
    merged = dict(existing)
    if newer:
        merged["title"] = paper.title or existing["title"]
        merged["abstract"] = paper.abstract or existing["abstract"]
        merged["version"] = paper.version
    elif older:  # a late copy of an earlier version only fills what is missing
        merged["title"] = existing["title"] or paper.title
        merged["abstract"] = existing["abstract"] or paper.abstract
    else:
        merged["title"] = existing["title"] or paper.title
        merged["abstract"] = _longer(existing["abstract"], paper.abstract) or ""
        if existing["version"] is None:
            merged["version"] = paper.version
    if len(paper.authors) > len(existing["authors"]):
        merged["authors"] = list(paper.authors)
    merged["categories"] = _union(existing["categories"], paper.categories)
    merged["keywords"] = _union(existing["keywords"], paper.keywords)
    for key in (
        "url",
        "pdf_url",
        "code_url",
        "project_url",
        "published_at",
        "doi",
        "thumbnail_url",
        "organization",
    ):
        merged[key] = existing[key] or fresh[key]
    for key in ("comment", "journal_ref"):  # these belong to a version: the newest wins
        merged[key] = (fresh[key] or existing[key]) if newer else (existing[key] or fresh[key])
    merged["summary"] = _longer(existing["summary"], paper.summary)
    return merged
