"""Feed text is untrusted: reduce it to bounded plain text and keep only http(s) links."""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import urlsplit

MAX_TITLE = 500
MAX_ABSTRACT = 10_000
MAX_SUMMARY = 1_000
MAX_AUTHORS = 200
MAX_NAME = 200
MAX_KEYWORDS = 50
MAX_URL = 2_000

# A tag starts with a letter (or "/" and a letter) and holds no "<": "0 < a < 1 and b > 2"
# in an abstract is maths, not markup, and must survive.
_TAG = re.compile(r"<!--.{0,2000}?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]{0,2000})?/?>", re.DOTALL)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


_TEX_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "c": "\u0327",
    "v": "\u030c",
    "u": "\u0306",
    "H": "\u030b",
    "r": "\u030a",
    "k": "\u0328",
}
_TEX_ACCENT = re.compile(r"""\{?\\(['`^"~=.]|[cvuHrk](?=[\s{]))\s*\{?([A-Za-z]|\\i)\}?\}?""")
_TEX_LETTERS = {
    r"\ss": "ß",
    r"\o": "ø",
    r"\O": "Ø",
    r"\l": "ł",
    r"\L": "Ł",
    r"\ae": "æ",
    r"\AE": "Æ",
    r"\aa": "å",
    r"\AA": "Å",
}
_TEX_LETTER = re.compile(r"\{?(\\(?:ss|o|O|l|L|ae|AE|aa|AA))(?![A-Za-z])(?:\{\}| )?\}?")


def decode_tex(text: str) -> str:
    """TeX accents as arXiv writes them in names (``Andr\\'e``, ``{\\"o}``) -> Unicode."""
    if "\\" not in text:
        return text

    def accent(m: re.Match[str]) -> str:
        base = "i" if m.group(2) == "\\i" else m.group(2)
        return unicodedata.normalize("NFC", base + _TEX_ACCENTS[m.group(1)])

    text = _TEX_ACCENT.sub(accent, text)
    return _TEX_LETTER.sub(lambda m: _TEX_LETTERS[m.group(1)], text)


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
    if not url or len(url) > MAX_URL or _CONTROL.search(url) or any(c in url for c in " \t\r\n"):
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
