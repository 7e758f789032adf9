"""Render a digest (or a confirmation) to subject, HTML and text.

MJML is compiled once per template per process into a Jinja template; only Jinja runs per
subscriber. ``<mj-include path="..."/>`` partials are expanded before compiling, from the same
layered folders as the templates: the operator's ``templates_dir`` first, the packaged ones
second, file by file. Feed text is escaped by autoescape; undefined names fail loudly.
"""

from __future__ import annotations

import binascii
import logging
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from mjml import mjml2html

from newsletter.errors import TemplateError
from newsletter.models import Digest, DigestItem, RenderedEmail
from newsletter.render_cache import Placeholders, RenderCache, SharedRender, crlf
from newsletter.resources import bundled
from newsletter.sources.text import safe_url

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
CONFIRM_HTML = "confirm.mjml.j2"
CONFIRM_TEXT = "confirm.txt.j2"
HTML_BUDGET = 100 * 1024
SIZING_LINK = "https://" + "x" * 292  # what each personal link counts for in the budget
DEFAULT_SUBJECT = "{{ top }}{% if more %} + {{ more }} more{% endif %}"

log = logging.getLogger(__name__)
_INCLUDE = re.compile(r"<mj-include\s+path=\"([^\"]+)\"\s*/>")


@dataclass(frozen=True, slots=True)
class Links:
    """Per-subscriber links the footer and headers carry."""

    unsubscribe: str
    archive: str
    preferences: str = ""


@dataclass(frozen=True, slots=True)
class Branding:
    """Per-list values every email shows, and how the digest is laid out."""

    name: str
    base_url: str
    postal_address: str = ""
    topic_names: Mapping[str, str] = field(default_factory=dict)
    layout: str = "ranked"  # or "topics": grouped under each topic's name
    subject: str = DEFAULT_SUBJECT


def shorten_authors(authors: Sequence[str]) -> str:
    if len(authors) <= 4:
        return ", ".join(authors)
    return ", ".join(authors[:3]) + ", … " + authors[-1]


@lru_cache(maxsize=50_000)
def wrap(text: str, width: int = 78, indent: str = "   ") -> str:
    """Word-wrap for the text part; cached, as the same papers recur in many digests."""
    return textwrap.fill(
        text, width=width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def one_line(item: DigestItem, limit: int = 300) -> str:
    """The AI summary when there is one, else the abstract cut at a word boundary."""
    text = item.paper.summary or item.paper.abstract
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind(" ")] + "…" if " " in cut else cut + "…"


class Renderer:
    """Holds the compiled templates; ``render`` is the per-subscriber hot path."""

    def __init__(self, branding: Branding, templates_dir: Path | None = None) -> None:
        self.branding = branding
        search = [str(templates_dir)] if templates_dir else []
        search.append(str(bundled("templates")))
        self._loader = jinja2.FileSystemLoader(search)
        self._html_env = jinja2.Environment(
            loader=self._loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._text_env = jinja2.Environment(
            loader=self._loader,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._text_env.filters["wrap"] = wrap
        self._variables: set[str] = set()  # every name the templates read
        self._html = self.compile_mjml(HTML_TEMPLATE)
        self._text = self._text_template(TEXT_TEMPLATE)
        try:
            self._subject = self._text_env.from_string(branding.subject)
            self._subject.render(
                top="A paper", more=2, count=3, name=branding.name, date="2026-01-01"
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(
                f"digest.subject: {exc}", hint="it may use top, more, count, name and date"
            ) from None
        self._confirm: tuple[jinja2.Template, jinja2.Template] | None = None
        self._cache = RenderCache()
        self._marks = Placeholders.new()
        self._uses_name = "subscriber_name" in self._variables
        self._cache_ok, self._verified = True, False

    # ---- compiling, once ------------------------------------------------------------------

    def _source(self, name: str) -> tuple[str, str]:
        try:
            source, filename, _ = self._loader.get_source(self._html_env, name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {name} not found") from None
        return source, filename or name

    def _expand(self, source: str, depth: int = 0) -> str:
        if depth > 5:
            raise TemplateError("mj-include nested more than 5 deep (a loop?)")
        return _INCLUDE.sub(lambda m: self._expand(self._source(m.group(1))[0], depth + 1), source)

    def compile_mjml(self, name: str) -> jinja2.Template:
        """MJML (partials expanded) -> HTML with the Jinja tags intact -> a Jinja template."""
        source, filename = self._source(name)
        try:
            compiled = mjml2html(self._expand(source))
        except TemplateError:
            raise
        except Exception as exc:  # mrml raises its own error types
            raise TemplateError(f"template {filename}: MJML does not compile: {exc}") from None
        try:
            self._variables |= meta.find_undeclared_variables(self._html_env.parse(compiled))
            return self._html_env.from_string(compiled)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {filename}: line {exc.lineno}: {exc.message}") from None

    def _text_template(self, name: str) -> jinja2.Template:
        try:
            source = self._loader.get_source(self._text_env, name)[0]
            self._variables |= meta.find_undeclared_variables(self._text_env.parse(source))
            return self._text_env.get_template(name)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from None

    # ---- per subscriber ------------------------------------------------------------------

    def _intro(self, digest: Digest) -> str:
        """ "9 papers for Speech, Vision": the topics in the order they first appear."""
        n = len(digest.items)
        if not n:
            return "nothing new today"
        topic_names = self.branding.topic_names
        names = dict.fromkeys(
            topic_names[t]
            for t in (i.topic_id for i in digest.items)
            if t is not None and t in topic_names
        )
        papers = f"{n} paper{'s' if n != 1 else ''}"
        return f"{papers} for {', '.join(names)}" if names else f"{papers} picked for you"

    def context(
        self,
        digest: Digest,
        links: Links,
        full: int | None = None,
        compact: int | None = None,
        listed: int | None = None,
    ) -> dict[str, Any]:
        """Template values. The first ``full`` items are full cards, the next ``compact``
        compact ones (title, authors, badges), then up to ``listed`` plain links with
        shortened titles; the rest are counted on the web edition: the size budget."""
        items = self._ordered(digest.items)
        n_full = len(items) if full is None else min(full, len(items))
        n_cards = len(items) if compact is None else min(len(items), n_full + compact)
        refs: list[str] = []

        def ref(url: str | None) -> str:
            if not url:
                return ""
            refs.append(f"[{len(refs) + 1}] {url}")
            return f"[{len(refs)}]"

        cards = []
        for number, it in enumerate(items[:n_cards], start=1):
            p = it.paper
            # feed links were checked when parsed; checked again here, as templates trust them
            url, pdf, code, project = (
                safe_url(u) for u in (p.url, p.pdf_url, p.code_url, p.project_url)
            )
            parts = [
                f"{label} {ref(url)}"
                for label, url in (
                    ("Abstract", url),
                    ("PDF", pdf),
                    ("Code", code),
                    ("Project", project),
                )
                if url
            ]
            byline = shorten_authors(p.authors)
            badges = [
                f"{p.signals.upvotes} upvotes" if p.signals.upvotes else "",
                f"{p.signals.stars} stars" if p.signals.stars else "",
            ]
            cards.append(
                {
                    "number": number,
                    "full": number <= n_full,
                    "title": p.title,
                    "url": url,
                    "pdf_url": pdf,
                    "code_url": code,
                    "project_url": project,
                    "authors": byline,
                    "summary": one_line(it) if number <= n_full else "",
                    "categories": ", ".join(p.categories[:3]),
                    "upvotes": p.signals.upvotes,
                    "stars": p.signals.stars,
                    "reasons": "; ".join(it.reasons),
                    "topic": it.topic_id,
                    "byline": " · ".join(x for x in (byline, *badges) if x),
                    "refs": " · ".join(parts),
                }
            )
        rest = items[n_cards:]
        shown_rest = rest if listed is None else rest[:listed]
        more = [
            {
                "title": it.paper.title if listed is None else _short(it.paper.title, 90),
                "url": safe_url(it.paper.url),
                "ref": ref(safe_url(it.paper.url)),
            }
            for it in shown_rest
        ]
        unlisted = len(rest) - len(shown_rest)
        groups: list[dict[str, Any]]
        if self.branding.layout == "topics":
            grouped: dict[str | None, list[dict[str, Any]]] = {}
            for card, it in zip(cards, items, strict=False):
                grouped.setdefault(it.topic_id, []).append(card)
            groups = [
                {"name": self.branding.topic_names.get(t or "", "Also for you"), "cards": group}
                for t, group in grouped.items()
            ]
        else:
            groups = [{"name": "", "cards": cards}]
        intro = self._intro(digest)
        top = digest.items[0].paper.title if digest.items else ""
        return {
            "name": self.branding.name,
            "base_url": self.branding.base_url,
            "postal_address": self.branding.postal_address,
            "edition_date": digest.edition_date.strftime("%A %-d %B %Y"),
            "subscriber_name": digest.subscriber.name,
            "intro": intro,
            "preheader": f"{intro}: {top}" if top else intro,
            "groups": groups,
            "items": cards,
            "more": more,
            "more_count": len(rest),
            "unlisted": unlisted,
            "count": len(items),
            "unsubscribe_url": links.unsubscribe,
            "archive_url": links.archive,
            "preferences_url": links.preferences or links.unsubscribe,
            "archive_ref": ref(links.archive),
            "preferences_ref": ref(links.preferences),
            "unsubscribe_ref": ref(links.unsubscribe),
            "links": refs,
        }

    def _ordered(self, items: Sequence[DigestItem]) -> Sequence[DigestItem]:
        """In the topics layout, each topic's papers together (topics in order of first
        appearance), so cards, numbers and links all read in the order shown."""
        if self.branding.layout != "topics":
            return items
        first: dict[str | None, int] = {}
        for i, it in enumerate(items):
            first.setdefault(it.topic_id, i)
        return sorted(items, key=lambda it: first[it.topic_id])

    def subject(self, digest: Digest) -> str:
        items = digest.items
        top = items[0].paper.title if items else ""
        if len(top) > 80:
            top = top[:77].rstrip() + "…"
        if not items:
            return f"{self.branding.name}: nothing new today"
        return self._subject.render(
            top=top,
            more=len(items) - 1,
            count=len(items),
            name=self.branding.name,
            date=digest.edition_date.isoformat(),
        ).strip()

    def render(self, digest: Digest, links: Links) -> RenderedEmail:
        """Subject, HTML and text; the HTML stays under ``HTML_BUDGET`` (Gmail clips past it)."""
        return self.render_encoded(digest, links)[0]

    def render_encoded(self, digest: Digest, links: Links) -> tuple[RenderedEmail, bytes | None]:
        """``render``, plus the HTML part already quoted-printable encoded when the digest
        came from the shared-render cache (None otherwise: the caller encodes it)."""
        if self._cache_ok:
            has_prefs = bool(links.preferences)
            key = (
                digest.edition_date,
                tuple((i.paper.id, i.topic_id, i.reasons) for i in digest.items),
                has_prefs,
                digest.subscriber.name if self._uses_name else None,
            )
            shared = self._cache.get(key, lambda: self._shared(digest, has_prefs))
            values = {
                "unsubscribe": links.unsubscribe,
                "archive": links.archive,
                "preferences": links.preferences,
            }
            out = (
                shared.personalise(values, self._marks, 2 * HTML_BUDGET)
                if shared is not None
                else None
            )
            if out is not None:
                if not self._verified:
                    self._verify(digest, links, *out)
                if self._cache_ok:
                    return out
        return self._render_full(digest, links), None

    def _shared(self, digest: Digest, has_prefs: bool) -> SharedRender:
        """The digest rendered once with placeholder links."""
        m = self._marks
        email = self._render_full(
            digest, Links(m.unsubscribe, m.archive, m.preferences if has_prefs else "")
        )
        return SharedRender.build(email.subject, email.html, email.text, m)

    def _verify(self, digest: Digest, links: Links, email: RenderedEmail, html_qp: bytes) -> None:
        """Once per renderer: the shared path must give exactly the full render, else (a
        template that transforms the links) every message is rendered in full."""
        full = self._render_full(digest, links)
        same = full == email and binascii.a2b_qp(html_qp) == crlf(full.html).encode()
        self._cache_ok, self._verified = same, True
        if not same:
            log.warning("templates transform the links: rendering each message in full")

    def _render_full(self, digest: Digest, links: Links) -> RenderedEmail:
        try:
            values = self.context(digest, links)
            layout = self._layout(digest)
            html = self._html.render(self.context(digest, links, *layout) if layout else values)
            text = self._text.render(values)
            subject = self.subject(digest)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"rendering failed: {exc}") from None
        return RenderedEmail(subject=subject, html=html, text=text)

    def _layout(self, digest: Digest) -> tuple[int, int, int | None] | None:
        """None when every card fits the budget, else (full cards, compact cards, listed
        links): most full cards that fit, then compact cards, then the rest as links.

        Sized with every link counted at ``SIZING_LINK``'s length, so the layout depends on
        the digest alone, not on a subscriber's links: one layout for everyone who shares
        the digest, which is what lets it be rendered once.
        """
        sizing = Links(SIZING_LINK, SIZING_LINK, SIZING_LINK)

        def fits(full: int | None, compact: int | None, listed: int | None = None) -> bool:
            html = self._html.render(self.context(digest, sizing, full, compact, listed))
            return len(html.encode()) <= HTML_BUDGET

        if fits(None, None):
            return None
        n = len(digest.items)
        full = _most(lambda f: fits(f, n - f), n)  # full cards, the rest compact
        if full >= 0:
            return full, n - full, None
        compact = _most(lambda c: fits(0, c), n)  # compact cards, the rest links
        if compact >= 0:
            return 0, compact, None
        return 0, 0, max(0, _most(lambda k: fits(0, 0, k), n))

    def render_confirmation(self, confirm_url: str) -> RenderedEmail:
        """The double opt-in email: no text from the sign-up form, only our own words."""
        if self._confirm is None:
            self._confirm = (self.compile_mjml(CONFIRM_HTML), self._text_template(CONFIRM_TEXT))
        html_t, text_t = self._confirm
        values = {
            "name": self.branding.name,
            "confirm_url": confirm_url,
            "postal_address": self.branding.postal_address,
        }
        return RenderedEmail(
            subject=f"Confirm your subscription to {self.branding.name}",
            html=html_t.render(values),
            text=text_t.render(values),
        )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _most(fits: Any, n: int) -> int:
    """The largest k in [0, n] for which ``fits(k)`` (binary search), or -1."""
    lo, hi, best = 0, n, -1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best
