"""Render a digest to subject, HTML and text.

MJML is compiled once per template per process into a Jinja template; only Jinja runs per
subscriber. Templates come from the operator's folder first, the packaged ones second.
Feed text is escaped by autoescape; undefined names fail loudly (StrictUndefined).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from mjml import mjml2html

from newsletter.errors import TemplateError
from newsletter.models import Digest, DigestItem, RenderedEmail
from newsletter.resources import bundled

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
HTML_BUDGET = 100 * 1024


@dataclass(frozen=True, slots=True)
class Links:
    """Per-subscriber links the footer and headers carry."""

    unsubscribe: str
    archive: str


@dataclass(frozen=True, slots=True)
class Branding:
    """Per-list values every email shows."""

    name: str
    base_url: str
    postal_address: str = ""


def shorten_authors(authors: Sequence[str]) -> str:
    if len(authors) <= 4:
        return ", ".join(authors)
    return ", ".join(authors[:3]) + ", … " + authors[-1]


def one_line(item: DigestItem, limit: int = 300) -> str:
    text = item.paper.summary or item.paper.abstract
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut[: cut.rfind(" ")] + "…" if " " in cut else cut + "…"


def subject_for(name: str, digest: Digest) -> str:
    items = digest.items
    if not items:
        return f"{name}: nothing new today"
    top = items[0].paper.title
    if len(top) > 80:
        top = top[:77].rstrip() + "…"
    more = f" + {len(items) - 1} more" if len(items) > 1 else ""
    return f"{top}{more}"


class Renderer:
    """Holds the compiled templates; ``render`` is the per-subscriber hot path."""

    def __init__(self, branding: Branding, templates_dir: Path | None = None) -> None:
        self.branding = branding
        search = [str(templates_dir)] if templates_dir else []
        search.append(str(bundled("templates")))
        loader = jinja2.FileSystemLoader(search)
        self._html_env = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._text_env = jinja2.Environment(
            loader=loader,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._html = self._compile_mjml(loader)
        try:
            self._text = self._text_env.get_template(TEXT_TEMPLATE)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {TEXT_TEMPLATE}: {exc}") from None

    def _compile_mjml(self, loader: jinja2.FileSystemLoader) -> jinja2.Template:
        try:
            source, filename, _ = loader.get_source(self._html_env, HTML_TEMPLATE)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {HTML_TEMPLATE} not found") from None
        try:
            compiled = mjml2html(source)
        except Exception as exc:  # mrml raises its own error types
            raise TemplateError(f"template {filename}: MJML does not compile: {exc}") from None
        try:
            return self._html_env.from_string(compiled)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {filename}: line {exc.lineno}: {exc.message}") from None

    def context(self, digest: Digest, links: Links, cards: int | None = None) -> dict[str, Any]:
        """Template values; items past ``cards`` are listed as plain links (size budget)."""
        shown = digest.items if cards is None else digest.items[:cards]
        items = [
            {
                "title": it.paper.title,
                "url": it.paper.url,
                "pdf_url": it.paper.pdf_url,
                "code_url": it.paper.code_url,
                "project_url": it.paper.project_url,
                "authors": shorten_authors(it.paper.authors),
                "summary": one_line(it),
                "categories": ", ".join(it.paper.categories[:3]),
                "upvotes": it.paper.signals.upvotes,
                "stars": it.paper.signals.stars,
                "reasons": "; ".join(it.reasons),
            }
            for it in shown
        ]
        more = [{"title": it.paper.title, "url": it.paper.url} for it in digest.items[len(shown) :]]
        return {
            "name": self.branding.name,
            "base_url": self.branding.base_url,
            "postal_address": self.branding.postal_address,
            "edition_date": digest.edition_date.strftime("%A %-d %B %Y"),
            "subscriber_name": digest.subscriber.name,
            "items": items,
            "more": more,
            "count": len(digest.items),
            "unsubscribe_url": links.unsubscribe,
            "archive_url": links.archive,
        }

    def _html_for(self, digest: Digest, links: Links, cards: int | None) -> str:
        return self._html.render(self.context(digest, links, cards))

    def render(self, digest: Digest, links: Links) -> RenderedEmail:
        """Subject, HTML and text; the HTML stays under ``HTML_BUDGET`` (Gmail clips past it)."""
        try:
            html = self._html_for(digest, links, None)
            if len(html.encode()) > HTML_BUDGET:
                html = self._fit(digest, links)
            text = self._text.render(self.context(digest, links))
        except jinja2.TemplateError as exc:
            raise TemplateError(f"rendering failed: {exc}") from None
        return RenderedEmail(subject=subject_for(self.branding.name, digest), html=html, text=text)

    def _fit(self, digest: Digest, links: Links) -> str:
        """Most full cards that fit the budget, the rest as links (binary search on the count)."""
        lo, hi = 0, len(digest.items) - 1
        best = self._html_for(digest, links, 0)
        while lo <= hi:
            mid = (lo + hi) // 2
            html = self._html_for(digest, links, mid)
            if len(html.encode()) <= HTML_BUDGET:
                best, lo = html, mid + 1
            else:
                hi = mid - 1
        return best
