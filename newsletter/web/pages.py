"""The web pages: Jinja2 templates in layered folders, as the emails' (the operator's
``templates_dir/web`` first, then the packaged ``templates/web``), autoescaped, one shared
stylesheet with the emails' colours and type."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import jinja2
from starlette.responses import HTMLResponse

from newsletter.resources import bundled
from newsletter.sources.text import safe_url


class Pages:
    """Renders a page template with the list's branding into a response."""

    def __init__(self, branding: Mapping[str, Any], templates_dir: Path | None = None) -> None:
        search = [str(templates_dir / "web")] if templates_dir else []
        search.append(str(bundled("templates") / "web"))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["safe_url"] = lambda u: safe_url(u) or ""
        self.branding = dict(branding)
        self.stylesheet = self.env.get_template("site.css").render()

    def render(
        self,
        name: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**self.branding, **values)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The IANA zones a subscriber may choose, sorted (UTC first)."""
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
    return ("UTC", *zones)
