"""The demo digest in headless Chromium at phone and desktop widths.

Needs Debian's ``chromium`` and Playwright's Python package (driving that executable; no
browser is downloaded). Screenshots go to ``out/screenshots/`` for people to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS, NOW, REPO, needs_chromium

pytestmark = needs_chromium
ARGS = CHROMIUM_ARGS


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from newsletter.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, NOW)
    assert result.received == 5
    return out


@pytest.mark.parametrize("width", [375, 600])
def test_digest_fits_and_links_every_title(demo_out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    shots = REPO / "out" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p for p in demo_out.glob("*.html") if p.name != "index.html")
    assert len(pages) == 5
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            for html in pages:
                page.goto(html.as_uri())
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{html.name} overflows by {overflow}px at {width}px"
                titles = html.with_suffix(".txt").read_text().split("\nLinks:\n")[0]
                expected = [
                    line.split(". ", 1)[1]
                    for line in titles.splitlines()
                    if line[:1].isdigit() and ". " in line
                ]
                for title in expected:
                    link = page.locator("a", has_text=title[:40]).first
                    assert link.is_visible(), f"{title!r} not visible in {html.name}"
                    href = link.get_attribute("href") or ""
                    assert href.startswith("https://"), f"{title!r} is not linked"
                    box = link.bounding_box()
                    assert box is not None and box["x"] + box["width"] <= width + 1
                for footer in ("View in browser", "Preferences", "Unsubscribe"):
                    assert page.get_by_role("link", name=footer).count() == 1
                page.screenshot(path=str(shots / f"{html.stem}-{width}.png"), full_page=True)
        finally:
            browser.close()


def test_dark_mode_keeps_text_readable(demo_out: Path) -> None:
    from playwright.sync_api import sync_playwright

    html = next(p for p in sorted(demo_out.glob("*.html")) if p.name != "index.html")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme="dark")
            page.goto(html.as_uri())
            # the colour actually behind the summary: the nearest ancestor that paints one
            colors = page.evaluate("""() => {
                const text = [...document.querySelectorAll('.card div')]
                    .find(d => d.textContent.length > 60 && !d.querySelector('div'));
                let el = text, bg = 'rgba(0, 0, 0, 0)';
                while (el && bg === 'rgba(0, 0, 0, 0)') {
                    bg = getComputedStyle(el).backgroundColor; el = el.parentElement;
                }
                return [bg, getComputedStyle(text).color];
            }""")
            page.screenshot(path=str(REPO / "out" / "screenshots" / "dark-600.png"), full_page=True)
        finally:
            browser.close()
    background, text = colors
    assert background == "rgb(22, 27, 34)"  # the dark card, not white
    assert text == "rgb(230, 237, 243)"  # light text on it
