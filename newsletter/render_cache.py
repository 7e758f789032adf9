"""Render once per distinct digest, personalise per subscriber by substitution.

On a list of thousands most subscribers share a digest (same papers, same reasons); only
their links differ. The digest is rendered once with placeholder links, and its HTML is
quoted-printable encoded once, in segments split at the placeholders; each subscriber's
message joins the segments with their own links between QP soft line breaks (``=`` CRLF,
which decode to nothing). The result decodes to exactly what a full render gives; the
renderer checks that on first use and falls back to full renders if a custom template
transforms the links.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from newsletter.models import RenderedEmail

SOFT_BREAK = b"=\r\n"
_KEYS = ("unsubscribe", "archive", "preferences")


def crlf_ends(text: str) -> str:
    """Every line end as CRLF."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def crlf(text: str) -> str:
    """Every line end as CRLF, ending with one (what goes on the wire)."""
    body = crlf_ends(text)
    return body if body.endswith("\r\n") else body + "\r\n"


def qp(text: str) -> bytes:
    """Quoted-printable in C (``binascii``) for CRLF text; lines of at most 76 characters.

    ``b2a_qp`` ends its soft line breaks as the input's first line does, LF when the input
    has none, so those are made CRLF here; and it can leave a 77-character line when it
    encodes trailing whitespace (``=20``) after its length check, so such lines are split.
    """
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    if "\n" not in text:
        encoded = encoded.replace(b"\n", b"\r\n")
    if b"=20\r\n" in encoded or b"=09\r\n" in encoded or encoded.endswith((b"=20", b"=09")):
        encoded = b"\r\n".join(_split_long(line) for line in encoded.split(b"\r\n"))
    return encoded


def _split_long(line: bytes) -> bytes:
    """A QP line of more than 76 characters as soft-broken lines of at most 76."""
    out = []
    while len(line) > 76:
        cut = 75
        while b"=" in line[cut - 2 : cut]:  # never split an =XX escape
            cut -= 1
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return b"\r\n".join(out)


def qp_open(text: str) -> bytes:
    """``qp`` for a piece a soft line break will follow: its last line is kept to 75
    characters, so with the ``=`` it still fits in 76."""
    encoded = qp(text)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start <= 75:
        return encoded
    cut = start + 75
    while b"=" in encoded[cut - 2 : cut]:  # never split an =XX escape
        cut -= 1
    return encoded[:cut] + SOFT_BREAK + encoded[cut:]


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Stand-in links: random letters and digits no template filter changes."""

    unsubscribe: str
    archive: str
    preferences: str

    @classmethod
    def new(cls) -> Placeholders:
        tag = secrets.token_hex(8)
        return cls(*(f"NLPLACEHOLDER{k.upper()}{tag}" for k in _KEYS))

    def pattern(self) -> re.Pattern[str]:
        return re.compile(f"({self.unsubscribe}|{self.archive}|{self.preferences})")

    def key_of(self, value: str) -> str:
        return _KEYS[(self.unsubscribe, self.archive, self.preferences).index(value)]


@dataclass(frozen=True, slots=True)
class SharedRender:
    """One digest rendered with placeholders: the HTML split into segments (raw and QP)."""

    subject: str
    html_parts: tuple[str, ...]  # text, link key, text, link key, ..., text
    html_qp_parts: tuple[bytes, ...]  # the text segments encoded; link keys kept as None
    html_size: int  # bytes of the text segments
    text: str  # with placeholders; small, substituted then encoded per subscriber

    @classmethod
    def build(cls, subject: str, html: str, text: str, marks: Placeholders) -> SharedRender:
        pieces = marks.pattern().split(html)
        parts = tuple(marks.key_of(p) if i % 2 else p for i, p in enumerate(pieces))
        last = len(parts) - 1
        return cls(
            subject,
            parts,
            tuple(
                b"" if i % 2 else qp(crlf(p)) if i == last else qp_open(crlf_ends(p))
                for i, p in enumerate(parts)
            ),
            sum(len(p.encode("utf-8")) for p in parts[::2]),
            text,
        )

    def personalise(
        self, links: dict[str, str], marks: Placeholders, budget: int
    ) -> tuple[RenderedEmail, bytes] | None:
        """The subscriber's email and its HTML part already QP-encoded; None when their
        links push the HTML over ``budget`` (the caller renders them in full)."""
        size = self.html_size + sum(len(links[p].encode("utf-8")) for p in self.html_parts[1::2])
        if size > budget:
            return None
        html: list[str] = []
        encoded: list[bytes] = []
        for i, part in enumerate(self.html_parts):
            if i % 2 == 0:
                html.append(part)
                encoded.append(self.html_qp_parts[i])
            else:
                value = links[part]
                html.append(value)
                encoded += (SOFT_BREAK, qp_open(value), SOFT_BREAK)
        text = self.text
        for key in _KEYS:
            text = text.replace(getattr(marks, key), links[key])
        email = RenderedEmail(self.subject, "".join(html), text)
        return email, b"".join(encoded)


class RenderCache:
    """A small LRU of shared renders (None: that digest is always rendered in full), keyed
    by what the digest's content depends on."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, SharedRender | None] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable[[], SharedRender | None]) -> SharedRender | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        entry = self._entries[key] = make()
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry
