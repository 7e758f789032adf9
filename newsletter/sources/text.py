"""Feed text is untrusted: reduce it to bounded plain text and keep only http(s) links."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

MAX_TITLE = 500
MAX_ABSTRACT = 10_000
MAX_SUMMARY = 1_000
MAX_AUTHORS = 200
MAX_NAME = 200
MAX_KEYWORDS = 50
MAX_URL = 2_000

_TAG = re.compile(r"<[^>]{0,2000}>")
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: object, limit: int) -> str:
    """Plain text from feed text: tags dropped, entities decoded, whitespace folded, bounded."""
    if value is None:
        return ""
    text = str(value)
    if "<" in text:
        text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _CONTROL.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > limit:
        cut = text[: limit - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limit // 2 else cut) + "…"
    return text


def safe_url(value: object) -> str | None:
    """The link when it is an absolute http(s) URL without credentials, else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > MAX_URL or _CONTROL.search(url) or any(c in url for c in " \r\n"):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password:
        return None
    return url


def clean_list(values: object, limit_items: int, limit_each: int) -> tuple[str, ...]:
    """A bounded tuple of non-empty cleaned strings."""
    if not isinstance(values, list | tuple):
        return ()
    out = []
    for v in values[:limit_items]:
        text = clean_text(v, limit_each)
        if text:
            out.append(text)
    return tuple(out)
