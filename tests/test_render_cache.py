"""The shared render: HTML quoted-printable encoded once in segments, personalised by joining
the segments with each subscriber's links between soft line breaks.

Whatever the HTML and the links, the joined bytes must decode to exactly the HTML a full
render gives (CRLF line ends), keep every line within 76 characters and carry no bare CR
or LF. The last test checks the same through ``Renderer`` against a full render.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import replace
from datetime import date
from email import message_from_bytes, policy
from functools import partial
from pathlib import Path

import pytest

from conftest import NOW, stored_paper
from newsletter.mail import ListHeaders, build_message, list_id_for
from newsletter.models import Digest, DigestItem, RenderedEmail, Signals, StoredPaper, Subscriber
from newsletter.render import Branding, Links, Renderer
from newsletter.render_cache import (
    SOFT_BREAK,
    Placeholders,
    RenderCache,
    SharedRender,
    crlf,
    crlf_ends,
    qp,
    qp_open,
)
from newsletter.resources import bundled

MARKS = Placeholders.new()
TOKENS = {"@U@": MARKS.unsubscribe, "@A@": MARKS.archive, "@P@": MARKS.preferences}

# HTML with @U@ / @A@ / @P@ where the placeholders go
HTML_CASES = {
    "simple": '<p>Hello</p>\n<a href="@U@">Unsubscribe</a> · <a href="@A@">Web</a>\n',
    "no-placeholders": "<p>nothing to personalise</p>\n",
    "empty": "",
    "only-a-placeholder": "@P@",
    "placeholder-at-start": "@U@ and then the rest of the line\nsecond line",
    "placeholder-at-end": "the line, and then\n@A@",
    "adjacent": "@U@@A@@P@",
    "adjacent-at-line-ends": "a\n@U@\n@A@\n@P@\n",
    "repeated": '<a href="@U@">x</a> <a href="@U@">y</a> <a href="@U@">z</a>',
    "long-line-no-spaces": "x" * 300 + "@U@" + "y" * 300 + "@A@" + "z" * 5,
    "long-line-words": ("word " * 40) + "@U@" + (" word" * 40),
    "non-ascii": "Zoë — naïve ünïcode 🚀 " + "é" * 100 + "@A@" + "中文" * 40 + "\n",
    "equals": "a=b == c <a href='@U@?x=1&y==2'>=</a> = =\n==@P@==",
    "short-trailing-spaces": "line one   \nline two\t\n@U@  \nend \n",
    "space-before-placeholder": "word @U@ word\t@A@\t",
    "lf-ends": "a\nb\n@U@\nc\n",
    "crlf-ends": "a\r\nb\r\n@U@\r\nc\r\n",
    "lone-cr": "a\rb\r\n@U@\rc\r",
    "blank-lines": "\n\n@U@\n\n\n@A@\n\n",
    "dots": ".\n@U@\n.\n..\n. @A@.",
    "line-75-before-placeholder": "x" * 75 + "@U@",
    "line-76-before-placeholder": "x" * 76 + "@U@",
    "line-77-before-placeholder": "x" * 77 + "@U@",
    "line-75-then-escape-before-placeholder": "x" * 73 + "é@U@",
    "line-74-then-equals-before-placeholder": "x" * 74 + "=@U@",
    "line-72-then-equals-before-placeholder": "x" * 72 + "=@U@=" + "x" * 72,
    "line-76-after-placeholder": "@U@" + "x" * 76 + "\n",
    "line-76-between": "@U@" + "x" * 76 + "@A@",
    "escape-at-every-column": "".join("x" * n + "é" for n in range(80)) + "@U@",
}
# lines of exactly 74 characters plus a trailing space or tab: see test_qp_line_length_*
LONG_TRAILING_SPACE = {
    "line-74-trailing-space-before-lf": "x" * 74 + " \n@U@\n",
    "line-74-trailing-tab-at-end": "@U@\n" + "x" * 74 + "\t",
}

LINK_CASES = {
    "short": {
        "unsubscribe": "https://d.example/u/T",
        "archive": "https://d.example/a/2026-11-24/T",
        "preferences": "https://d.example/p/T",
    },
    "long-with-specials": {
        "unsubscribe": "https://digest.example.org/unsubscribe/" + "Ab_9.-=" * 20,
        "archive": "https://digest.example.org/archive/2026-11-24/" + "x.y_z=" * 30,
        "preferences": "https://digest.example.org/preferences/?t=" + "=" * 90,
    },
    "line-boundaries": {"unsubscribe": "u" * 75, "archive": "a" * 76, "preferences": "p" * 77},
    "non-ascii-and-spaces": {
        "unsubscribe": "https://bücher.example/ü?q=é",
        "archive": " https://d.example/lead",
        "preferences": "https://d.example/trail ",
    },
}


def _html(case: str) -> str:
    return re.sub("@[UAP]@", lambda m: TOKENS[m.group(0)], case)


def _expected(case: str, links: dict[str, str]) -> str:
    keys = {"@U@": "unsubscribe", "@A@": "archive", "@P@": "preferences"}
    return re.sub("@[UAP]@", lambda m: links[keys[m.group(0)]], case)


def _personalise(case: str, links: dict[str, str]) -> tuple[RenderedEmail, bytes]:
    text = f"Unsubscribe: {MARKS.unsubscribe}\nWeb: {MARKS.archive}\n"
    shared = SharedRender.build("Subject", _html(case), text, MARKS)
    out = shared.personalise(links, MARKS, budget=10**9)
    assert out is not None
    return out


def _bare_cr_or_lf(data: bytes) -> bool:
    rest = data.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


def _long_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r\n") if len(line) > 76]


ALL_HTML = {**HTML_CASES, **LONG_TRAILING_SPACE}


@pytest.mark.parametrize("links", LINK_CASES.values(), ids=LINK_CASES.keys())
@pytest.mark.parametrize("case", ALL_HTML.values(), ids=ALL_HTML.keys())
def test_personalised_qp_decodes_to_the_full_html(case: str, links: dict[str, str]) -> None:
    email, html_qp = _personalise(case, links)
    expected = _expected(case, links)
    assert email.html == expected
    assert binascii.a2b_qp(html_qp) == crlf(expected).encode()
    assert html_qp.isascii()
    assert not _bare_cr_or_lf(html_qp)
    assert html_qp.endswith(b"\r\n")
    assert email.subject == "Subject"
    assert email.text == f"Unsubscribe: {links['unsubscribe']}\nWeb: {links['archive']}\n"


@pytest.mark.parametrize("links", LINK_CASES.values(), ids=LINK_CASES.keys())
@pytest.mark.parametrize("case", HTML_CASES.values(), ids=HTML_CASES.keys())
def test_personalised_qp_lines_fit_76(case: str, links: dict[str, str]) -> None:
    _, html_qp = _personalise(case, links)
    assert _long_lines(html_qp) == []


@pytest.mark.parametrize("case", LONG_TRAILING_SPACE.values(), ids=LONG_TRAILING_SPACE.keys())
def test_personalised_qp_lines_fit_76_with_trailing_space(case: str) -> None:
    _, html_qp = _personalise(case, LINK_CASES["short"])
    assert _long_lines(html_qp) == []


TRAILING_AT_75 = {
    "space-lf": "x" * 74 + " \n",
    "tab-crlf": "x" * 74 + "\t\r\nmore",
    "space-at-end": "x" * 74 + " ",
}


@pytest.mark.parametrize("text", TRAILING_AT_75.values(), ids=TRAILING_AT_75.keys())
def test_qp_line_length_with_a_trailing_space_at_column_75(text: str) -> None:
    # the content round-trips (test_qp_round_trips_and_uses_crlf), but the line is 77 long
    assert _long_lines(qp(crlf(text))) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "\r\n"),
        ("a", "a\r\n"),
        ("a\nb", "a\r\nb\r\n"),
        ("a\r\nb\r\n", "a\r\nb\r\n"),
        ("a\rb", "a\r\nb\r\n"),
        ("a\r\r\nb", "a\r\n\r\nb\r\n"),
        ("a\n\r", "a\r\n\r\n"),
        ("\n", "\r\n"),
    ],
)
def test_crlf(text: str, expected: str) -> None:
    assert crlf(text) == expected
    assert crlf_ends(text) == expected or crlf_ends(text) + "\r\n" == expected


QP_OPEN_TEXTS = [
    "",
    "plain",
    "x" * 74,
    "x" * 75,
    "x" * 76,
    "x" * 77,
    "x" * 151,
    "x" * 73 + "é",
    "x" * 74 + "é",
    "x" * 72 + "=",
    "x" * 73 + "=",
    "x" * 74 + "=",
    "é" * 30,
    "=" * 40,
    "line\r\n" + "y" * 80,
    "ends with a newline\r\n",
    "trailing space ",
    "x" * 74 + " ",
]


def _short_id(text: str) -> str:
    return re.sub(r"(.)\1{4,}", lambda m: f"{m.group(1)}*{len(m.group(0))}", text) or "empty"


@pytest.mark.parametrize("text", QP_OPEN_TEXTS, ids=[_short_id(t) for t in QP_OPEN_TEXTS])
def test_qp_open_leaves_room_for_a_soft_break(text: str) -> None:
    encoded = qp_open(text)
    last = encoded.rsplit(b"\n", 1)[-1]
    assert len(last) <= 75
    joined = encoded + SOFT_BREAK + b"tail"
    assert binascii.a2b_qp(joined) == (text + "tail").encode()
    assert _long_lines(joined) == []
    assert not _bare_cr_or_lf(joined)


QP_TEXTS = {
    "short": "a",
    "long": "x" * 200,
    "non-ascii": "é" * 80,
    "crlf": "a\r\nb\r\n",
    "equals-and-dot": "=\r\n.\r\n",
    "short-trailing-space": "a \nb\t\n",
    **{f"trailing-at-75-{k}": v for k, v in TRAILING_AT_75.items()},
}


@pytest.mark.parametrize("text", QP_TEXTS.values(), ids=QP_TEXTS.keys())
def test_qp_round_trips_and_uses_crlf(text: str) -> None:
    encoded = qp(crlf(text))
    assert binascii.a2b_qp(encoded) == crlf(text).encode()
    assert encoded.endswith(b"\r\n") and encoded.isascii()
    assert not _bare_cr_or_lf(encoded)
    if text not in TRAILING_AT_75.values():
        assert _long_lines(encoded) == []


def test_personalise_returns_none_over_budget() -> None:
    html = "<p>" + "x" * 1000 + '</p><a href="@U@">u</a><a href="@A@">a</a>'
    shared = SharedRender.build("S", _html(html), "", MARKS)
    links = {"unsubscribe": "u" * 50, "archive": "é" * 10, "preferences": "p" * 999}
    exact = len(_expected(html, links).encode("utf-8"))  # é is two bytes; prefs unused
    assert shared.html_size == len(html.encode()) - 2 * len("@U@")
    assert shared.personalise(links, MARKS, exact) is not None
    assert shared.personalise(links, MARKS, exact - 1) is None
    assert shared.personalise(links, MARKS, 0) is None


def test_placeholders() -> None:
    a, b = Placeholders.new(), Placeholders.new()
    values = (a.unsubscribe, a.archive, a.preferences)
    assert len(set(values)) == 3 and a != b
    assert all(v.isalnum() and v.isascii() for v in values)
    assert a.pattern().split(f"x{a.archive}y{a.unsubscribe}") == [
        "x",
        a.archive,
        "y",
        a.unsubscribe,
        "",
    ]
    assert [a.key_of(v) for v in values] == ["unsubscribe", "archive", "preferences"]
    assert a.pattern().search(b.unsubscribe) is None


def test_render_cache_lru() -> None:
    cache = RenderCache(size=2)
    made: list[str] = []

    def make(key: str) -> SharedRender | None:
        made.append(key)
        return None

    for key in ["a", "b", "a", "c", "b", "a"]:
        assert cache.get(key, partial(make, key)) is None
    # a, b miss; a hits; c miss (evicts b); b miss (evicts a); a miss
    assert made == ["a", "b", "c", "b", "a"]
    assert (cache.hits, cache.misses) == (1, 5)


# ---- through the Renderer -------------------------------------------------------------


def _paper(pid: str, title: str) -> StoredPaper:
    return stored_paper(
        pid,
        title,
        abstract=f"An abstract about {title.lower()}. " * 5,
        categories=("cs.CL",),
        signals=Signals(upvotes=3),
    )


DIGEST = Digest(
    Subscriber(id=7, email="reader@example.org", name="Reader"),
    date(2026, 11, 24),
    tuple(
        DigestItem(p, 1.0, "llm", ("topic: Language models",))
        for p in (
            _paper("2611.00001", "Small models, big ideas"),
            _paper("2611.00002", "Ünïcode títles and émoji 🚀 = a long title " + "w" * 80),
        )
    ),
)
BRAND = Branding("Cache Digest", "https://d.example", "1 Example Street")
LINKS_A = Links(
    "https://d.example/unsubscribe/AAAA",
    "https://d.example/archive/2026-11-24/AAAA",
    "https://d.example/preferences/AAAA",
)
LINKS_B = Links(
    "https://d.example/unsubscribe/" + "B=b_b.b" * 20,
    "https://d.example/archive/2026-11-24/" + "b" * 90,
    "https://d.example/preferences/" + "é" * 5,
)


def _full(renderer: Renderer, digest: Digest, links: Links) -> RenderedEmail:
    """The full render, bypassing the cache (``_render_full`` has returned either the email
    or (email, fitted) as the budget code changed)."""
    out: object = renderer._render_full(digest, links)
    email = out[0] if isinstance(out, tuple) else out
    assert isinstance(email, RenderedEmail)
    return email


def test_renderer_shared_path_matches_full_render() -> None:
    renderer = Renderer(BRAND)
    headers = ListHeaders("D <d@example.org>", list_id_for("D", "example.org"), "https://u/T", None)
    for n, links in enumerate((LINKS_A, LINKS_B)):
        email, html_qp = renderer.render_encoded(DIGEST, links)
        full = _full(renderer, DIGEST, links)
        assert html_qp is not None  # from the shared render
        assert email == full
        assert links.unsubscribe in email.html and links.unsubscribe in email.text
        assert binascii.a2b_qp(html_qp) == crlf(full.html).encode()
        assert _long_lines(html_qp) == [] and not _bare_cr_or_lf(html_qp)
        assert (renderer._cache.misses, renderer._cache.hits) == (1, n)
        # the message built with the pre-encoded part carries exactly the full render's HTML
        raw = build_message(
            email,
            to_name="R",
            to_addr="r@example.org",
            headers=headers,
            msg_id="<1@example.org>",
            now=NOW,
            html_qp=html_qp,
        )
        html_part = message_from_bytes(raw, policy=policy.default).get_body(("html",))
        assert html_part is not None
        # (the CRLF that ends the part belongs to the boundary that follows, RFC 2046 5.1.1)
        assert html_part.get_payload(decode=True) + b"\r\n" == crlf(full.html).encode()
    assert renderer._cache_ok


def test_renderer_other_digest_misses_and_no_preferences_is_its_own_entry() -> None:
    renderer = Renderer(BRAND)
    renderer.render_encoded(DIGEST, LINKS_A)
    other = replace(DIGEST, items=DIGEST.items[:1])
    email, html_qp = renderer.render_encoded(other, LINKS_B)
    assert html_qp is not None and email == _full(renderer, other, LINKS_B)
    no_prefs = replace(LINKS_A, preferences="")
    email, html_qp = renderer.render_encoded(DIGEST, no_prefs)
    assert html_qp is not None and email == _full(renderer, DIGEST, no_prefs)
    assert (renderer._cache.misses, renderer._cache.hits) == (3, 0)


def test_renderer_falls_back_when_a_template_transforms_links(tmp_path: Path) -> None:
    footer = bundled("templates") / "partials" / "footer.mjml.j2"
    source = footer.read_text(encoding="utf-8")
    assert "{{ unsubscribe_url }}" in source
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "footer.mjml.j2").write_text(
        # single quotes: the expression sits in a double-quoted href
        source.replace("{{ unsubscribe_url }}", "{{ unsubscribe_url | replace('/', '%2F') }}"),
        encoding="utf-8",
    )
    renderer = Renderer(BRAND, tmp_path)
    for links in (LINKS_A, LINKS_B):
        email, html_qp = renderer.render_encoded(DIGEST, links)
        assert html_qp is None  # rendered in full
        assert email == _full(renderer, DIGEST, links)
        assert links.unsubscribe.replace("/", "%2F") in email.html
    assert not renderer._cache_ok
