"""Rendering: a golden digest, escaping of hostile feed text, the size budget.

Regenerate the golden files after an intended template change with
``UPDATE_GOLDEN=1 pytest tests/test_render.py`` and review the diff.
"""

from __future__ import annotations

import os
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import stored_paper
from newsletter.models import Digest, DigestItem, Signals, StoredPaper, Subscriber
from newsletter.render import HTML_BUDGET, Branding, Links, Renderer, shorten_authors

GOLDEN = Path(__file__).parent / "golden"
LINKS = Links(
    unsubscribe="https://d.example/unsubscribe/TOKEN",
    archive="https://d.example/archive/2026-11-24/TOKEN",
    preferences="https://d.example/preferences/TOKEN",
)
BRAND = Branding("Golden Digest", "https://d.example", "1 Example Street")


def _digest(*papers: StoredPaper) -> Digest:
    sub = Subscriber(id=7, email="reader@example.org", name="Reader")
    items = tuple(DigestItem(p, 1.0, "llm", ("topic: Language models", "cs.CL")) for p in papers)
    return Digest(sub, date(2026, 11, 24), items)


GOLDEN_DIGEST = _digest(
    stored_paper(
        "2611.00001",
        "Small models, big ideas",
        signals=Signals(upvotes=42, stars=310),
        code_url="https://github.com/ex/small",
        summary="A one-line AI summary.",
        authors=("A One", "B Two", "C Three", "D Four", "E Five"),
    ),
    stored_paper("2611.00002", "Ünïcode títles and émoji 🚀"),
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(BRAND)


@pytest.mark.parametrize("part", ["html", "text"])
def test_golden(renderer: Renderer, part: str) -> None:
    email = renderer.render(GOLDEN_DIGEST, LINKS)
    got = email.html if part == "html" else email.text
    path = GOLDEN / f"digest.{'html' if part == 'html' else 'txt'}"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")
    assert email.subject == "Small models, big ideas + 1 more"


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def test_hostile_feed_text_renders_inert(renderer: Renderer) -> None:
    hostile = stored_paper(
        "2611.66666",
        '<script>alert(1)</script><img src=x onerror="alert(2)"> {{ 7*7 }}',
        abstract="&lt;b&gt; " + "x" * 10_000,
        authors=("<b>Eve</b>",),
        summary='"><svg onload=alert(3)>',
    )
    email = renderer.render(_digest(hostile), LINKS)
    audit = _Audit()
    audit.feed(email.html)
    assert "script" not in audit.tags and "img" not in audit.tags and "svg" not in audit.tags
    assert audit.handlers == []
    assert all(h.startswith(("https://", "http://")) for h in audit.hrefs)
    assert "{{ 7*7 }}" in email.text and "49" not in email.text  # not evaluated as a template
    assert "<script>alert(1)</script>" in email.text  # plain text stays plain text


def _many(n: int) -> list[StoredPaper]:
    return [
        stored_paper(
            f"2611.{i:05d}",
            f"Paper number {i} " + "word " * 20,
            abstract="a " * 600,
            signals=Signals(upvotes=i, stars=i),
            code_url="https://github.com/x/y",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [30, 100])
def test_big_digests_stay_under_the_clip_budget(renderer: Renderer, n: int) -> None:
    papers = _many(n)
    email = renderer.render(_digest(*papers), LINKS)
    assert len(email.html.encode()) <= HTML_BUDGET
    assert LINKS.unsubscribe in email.html and LINKS.preferences in email.html
    # every paper is still there, as a full card, a compact card or a link: never clipped
    for p in papers:
        assert f'href="{p.url}"' in email.html
    full = email.html.count(">Why: ")
    assert full < n  # the budget made cards compact, best first stay full where they fit
    if n == 30:
        assert full > 0
    if n == 100:
        assert "more on the web" in email.html


@pytest.mark.parametrize(
    ("authors", "expected"),
    [
        ((), ""),
        (("A",), "A"),
        (("A", "B", "C", "D"), "A, B, C, D"),
        (("A", "B", "C", "D", "E"), "A, B, C, … E"),
    ],
)
def test_shorten_authors(authors: tuple[str, ...], expected: str) -> None:
    assert shorten_authors(authors) == expected


def test_operator_template_overrides_packaged(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("custom {{ count }} for {{ subscriber_name }}")
    email = Renderer(BRAND, tmp_path).render(GOLDEN_DIGEST, LINKS)
    assert email.text == "custom 2 for Reader"
    assert "Small models, big ideas" in email.html  # the HTML template still packaged


def test_hostile_links_rtl_and_emoji(renderer: Renderer) -> None:
    hostile = [
        stored_paper(
            "2611.70001",
            "\u202eevil.exe \u05e9\u05dc\u05d5\u05dd \U0001f680 \u0645\u0631\u062d\u0628\u0627",
            url="javascript:alert(1)",
            pdf_url="data:text/html,x",
            code_url="vbscript:msgbox",
            abstract="x" * 10_000,
        ),
        stored_paper("2611.70002", "Plain", url="https://user:pw@evil.example/"),
    ]
    email = renderer.render(_digest(*hostile), LINKS)
    audit = _Audit()
    audit.feed(email.html)
    assert all(
        h.startswith("https://d.example/") or h.startswith("https://arxiv.org") for h in audit.hrefs
    )
    for bad in ("javascript:", "data:text", "vbscript:", "user:pw@"):
        assert bad not in email.html and bad not in email.text
    assert "\U0001f680" in email.html and "\u05e9\u05dc\u05d5\u05dd" in email.text
    assert len(email.html.encode()) <= HTML_BUDGET


def test_text_part_wraps_at_78_and_numbers_its_links(renderer: Renderer) -> None:
    email = renderer.render(GOLDEN_DIGEST, LINKS)
    body, _, links = email.text.partition("\nLinks:\n")
    assert max(len(line) for line in body.splitlines()) <= 78
    numbered = [line for line in links.splitlines() if line]
    assert numbered[0] == "[1] https://arxiv.org/abs/2611.00001"
    assert all(f"[{n}]" in body for n in range(1, len(numbered) + 1))


def test_no_remote_fonts_or_images(renderer: Renderer) -> None:
    html = renderer.render(GOLDEN_DIGEST, LINKS).html
    assert "fonts.googleapis" not in html and "@import" not in html
    assert "<img" not in html
    assert 'lang="en"' in html and "color-scheme" in html


def test_topic_layout_and_intro_and_subject_template(tmp_path: Path) -> None:
    brand = Branding(
        "Golden Digest",
        "https://d.example",
        topic_names={"llm": "Language models"},
        layout="topics",
        subject="[{{ name }}] {{ count }} new: {{ top }}",
    )
    email = Renderer(brand).render(GOLDEN_DIGEST, LINKS)
    assert "LANGUAGE MODELS" in email.text
    assert "2 papers for Language models" in email.text
    assert email.subject == "[Golden Digest] 2 new: Small models, big ideas"


def test_confirmation_email_has_only_our_words() -> None:
    email = Renderer(BRAND).render_confirmation("https://d.example/confirm/TOKEN")
    assert "https://d.example/confirm/TOKEN" in email.html and email.text
    assert email.subject == "Confirm your subscription to Golden Digest"
    assert "72 hours" in email.text


@pytest.mark.parametrize("title", ["論文" * 120, '"&' * 240])
def test_budget_holds_even_for_huge_escaped_titles(renderer: Renderer, title: str) -> None:
    papers = [stored_paper(f"2611.{i:05d}", f"{i} {title}") for i in range(100)]
    email = renderer.render(_digest(*papers), LINKS)
    size = len(email.html.encode())
    assert size <= HTML_BUDGET
    assert email.html.encode().find(LINKS.unsubscribe.encode()) < HTML_BUDGET
    assert "more on the web" in email.html


def test_subject_template_mistake_is_caught_at_start() -> None:
    from newsletter.errors import TemplateError

    with pytest.raises(TemplateError, match="topic"):
        Renderer(Branding("X", "https://d.example", subject="{{ topic }} {{ top }}"))


def test_intro_and_titles_wrap_at_78() -> None:
    names = {
        "a": "Natural language processing",
        "b": "Computer vision and pattern recognition",
        "c": "Robotics and embodied agents",
    }
    brand = Branding("Golden Digest", "https://d.example", topic_names=names, layout="topics")
    papers = [stored_paper(f"2611.{i:05d}", "A title " * 20) for i in range(3)]
    sub = Subscriber(id=7, email="reader@example.org", name="Reader")
    items = tuple(DigestItem(p, 1.0, t, ("x",)) for p, t in zip(papers, "abc", strict=True))
    email = Renderer(brand).render(Digest(sub, date(2026, 11, 24), items), LINKS)
    body = email.text.partition("\nLinks:\n")[0]
    assert max(len(line) for line in body.splitlines()) <= 78
