"""Canonical paper ids: the versionless arXiv id where there is one, else DOI, else link."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_NEW = r"\d{4}\.\d{4,5}"
_OLD = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
_ARXIV_ID = re.compile(rf"(?P<id>{_NEW}|{_OLD})(?:v(?P<v>\d+))?")
_ARXIV_BARE = re.compile(rf"^(?:arxiv:)?(?P<id>{_NEW}|{_OLD})(?:v(?P<v>\d+))?$", re.IGNORECASE)
_ARXIV_IN_URL = re.compile(
    rf"arxiv\.org/(?:abs|pdf|html)/(?P<id>{_NEW}|{_OLD})(?:v(?P<v>\d+))?", re.IGNORECASE
)
_OAI = re.compile(rf"oai:arXiv\.org:(?P<id>{_NEW}|{_OLD})(?:v(?P<v>\d+))?", re.IGNORECASE)
_DOI = re.compile(r"(10\.\d{4,9}/\S+)")


def split_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """``(versionless id, version)`` from a bare id, an OAI guid or an arxiv.org URL."""
    text = text.strip()
    for pattern in (_ARXIV_BARE, _OAI, _ARXIV_IN_URL):
        m = pattern.search(text)
        if m:
            v = m.group("v")
            return m.group("id"), int(v) if v else None
    return None


def doi_from(text: str) -> str | None:
    """A DOI (lower-cased, as DOIs are case-insensitive) found in text or a doi.org link."""
    m = _DOI.search(text)
    return m.group(1).rstrip(".,;").lower() if m else None


def normalise_link(url: str) -> str:
    """A link reduced so trivially different spellings of it compare equal."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("https", host, path, parts.query, ""))


def canonical_id(
    *, arxiv: str | None = None, doi: str | None = None, link: str | None = None
) -> str | None:
    """The key a paper is stored under, or None when nothing identifies it."""
    if arxiv:
        split = split_arxiv_id(arxiv)
        if split:
            return split[0]
    if doi:
        d = doi_from(doi)
        if d:
            return f"doi:{d}"
    if link:
        return f"url:{normalise_link(link)}"
    return None
