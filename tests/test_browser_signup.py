"""Sign-up to unsubscribe in headless Chromium against a real ``newsletter serve``.

The server is a subprocess on 127.0.0.1 (wall clock, its own uvicorn); mail goes to an
aiosmtpd server in this process. The browser subscribes, opens the confirmation link from
the email, confirms, changes preferences, and unsubscribes with the link from the next
digest. Every page is checked at phone width (no sideways scrolling, the stylesheet applied,
controls found by their accessible names, no console errors or CSP violations) and
photographed into ``out/screenshots/signup-*.png``.

Needs Debian's ``chromium`` and Playwright's Python package (driving that executable; no
browser is downloaded).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS, NOW, REPO, SECRET, needs_chromium, write_config
from newsletter.config import load_config
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.pipeline import edition_date_for
from newsletter.smtp_server import LocalSMTPServer, Received
from newsletter.store import Store

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Response

pytestmark = needs_chromium
ARGS = CHROMIUM_ARGS
COMMAND = (sys.executable, "-m", "newsletter")
SHOTS = REPO / "out" / "screenshots"
BASE_URL = "https://digest.test.example"  # what write_config puts in links
EMAIL = "reader@example.org"
WIDTH = 375
LIGHT_BACKGROUND = "rgb(243, 244, 246)"  # --bg of site.css in light mode
# a control in the accessibility tree with no name: "- textbox" rather than '- textbox "Email"'
UNNAMED = re.compile(r"^\s*- '?(textbox|checkbox|radio|combobox|button|link)\b(?! \")", re.M)
# every CSP violation on the page, recorded before the page's own content runs
CSP_RECORDER = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _env() -> dict[str, str]:
    return {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(REPO)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = 20) -> None:
    """Poll ``ready`` until it holds; fail naming ``what`` once ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # waiting for readiness, not measuring time


@pytest.fixture
def server(tmp_path: Path, smtp_server: LocalSMTPServer) -> Iterator[tuple[str, Path]]:
    """``newsletter serve`` as a real process on a free port: (its base URL, the config)."""
    config = write_config(tmp_path, smtp_server.port)
    port = _free_port()
    log = tmp_path / "serve.log"
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*COMMAND, "--config", str(config), *serve],
            env=_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"newsletter serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{base}/healthz", trust_env=False, timeout=1).text == "ok"
        except httpx.TransportError:
            return False

    try:
        _wait_for("newsletter serve to answer /healthz", healthy)
        yield base, config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _send(config: Path, now: datetime, *options: str) -> None:
    """``newsletter send`` in a process of its own, as cron runs it (the browser's event
    loop runs in this thread, so the CLI's ``asyncio.run`` cannot)."""
    done = subprocess.run(
        [*COMMAND, "--config", str(config), "--now", now.isoformat(), "send", *options],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _text(received: Received) -> str:
    message = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None, "no text/plain part"
    return str(body.get_content())


def _local(url: str, base: str) -> str:
    assert url.startswith(f"{BASE_URL}/"), url
    return base + url.removeprefix(BASE_URL)


def _subscriber(config: Path) -> Subscriber:
    store = Store.open(load_config(config).database_url())
    try:
        sub = store.subscriber(email=EMAIL)
    finally:
        store.close()
    assert sub is not None, f"{EMAIL} is not in the store"
    return sub


class Checker:
    """The checks every page gets, then its screenshot."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.add_init_script(CSP_RECORDER)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("response", self._response)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status} for {response.url}")

    def _console(self, message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type not in ("error", "warning"):
            return
        if urlsplit(where).path == "/favicon.ico" and "404" in message.text:
            return  # the browser asks every site for one; the app serves none (by design)
        self.errors.append(f"console {message.type}: {message.text} ({where})")

    def __call__(self, shot: str, heading: str) -> None:
        from playwright.sync_api import expect

        page = self.page
        page.wait_for_load_state("load")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page).to_have_title(re.compile(rf"^{re.escape(heading)} · Test Digest$"))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{shot} overflows by {overflow}px at {WIDTH}px"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == LIGHT_BACKGROUND, f"{shot}: site.css not applied ({background})"
        assert page.evaluate("window.__violations") == [], f"{shot}: CSP violations"
        assert self.errors == [], f"{shot}: {self.errors}"
        unnamed = UNNAMED.findall(page.locator("body").aria_snapshot())
        assert unnamed == [], f"{shot}: controls without an accessible name: {unnamed}"
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


def test_subscribe_confirm_preferences_unsubscribe(
    server: tuple[str, Path], smtp_server: LocalSMTPServer
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, config = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 800}, color_scheme="light")
            page.set_default_timeout(10_000)
            check = Checker(page)

            # 1. the form: every control found by its accessible name
            page.goto(f"{base}/")
            check("signup-1-form", "Subscribe")
            expect(page.get_by_role("textbox")).to_have_count(1)  # the honeypot is hidden
            page.get_by_label("Email address").fill(EMAIL)
            page.get_by_role("checkbox", name="Language models").check()
            page.get_by_role("checkbox", name="Speech").check()
            expect(page.get_by_role("radio", name="Daily")).to_be_checked()
            expect(page.get_by_role("radio", name="Weekly")).not_to_be_checked()
            page.get_by_role("button", name="Subscribe").click()

            # 2. the same answer for everyone; the email follows in the background
            check("signup-2-check-inbox", "Check your inbox")
            expect(page.get_by_text("a confirmation email is on its way")).to_be_visible()
            _wait_for("the confirmation email", lambda: len(smtp_server.received) >= 1)
            confirmation = smtp_server.received[0]
            assert confirmation.rcpt_tos == (EMAIL,)
            assert _subscriber(config).status is SubscriberStatus.PENDING
            found = re.search(rf"{re.escape(BASE_URL)}/confirm/\S+", _text(confirmation))
            assert found, "no confirmation link in the email"

            # 3. the link shows a button; only pressing it confirms
            page.goto(_local(found.group(0), base))
            check("signup-3-confirm", "Confirm your subscription")
            assert _subscriber(config).status is SubscriberStatus.PENDING
            page.get_by_role("button", name="Confirm my subscription").click()

            # 4. subscribed, with the topics and frequency of the form
            check("signup-4-subscribed", "You are subscribed")
            sub = _subscriber(config)
            assert sub.status is SubscriberStatus.ACTIVE
            assert set(sub.topics) == {"llm", "speech"} and sub.frequency == "daily"
            page.get_by_role("link", name="Choose your preferences").click()

            # 5. the preferences form shows those choices; change them
            check("signup-5-preferences", "Your preferences")
            expect(page.get_by_role("checkbox", name="Language models")).to_be_checked()
            expect(page.get_by_role("checkbox", name="Vision")).not_to_be_checked()
            expect(page.get_by_role("radio", name="Daily")).to_be_checked()
            expect(page.get_by_label("Time zone")).to_have_value("UTC")
            page.get_by_role("checkbox", name="Vision").check()
            page.get_by_label("Your own keywords").fill("diffusion, speech recognition")
            page.get_by_role("radio", name="Weekly").check()
            page.get_by_label("Time zone").select_option("Europe/Berlin")
            pause = page.get_by_role("checkbox", name="Pause the digest")
            expect(pause).not_to_be_checked()  # paused, the next digest would not come
            page.get_by_role("button", name="Save preferences").click()

            # 6. saved: the notice, the form showing the new values, and the store holding them
            check("signup-6-saved", "Your preferences")
            expect(page.get_by_role("status")).to_contain_text("Saved.")
            expect(page.get_by_role("checkbox", name="Vision")).to_be_checked()
            expect(page.get_by_role("radio", name="Weekly")).to_be_checked()
            expect(page.get_by_label("Your own keywords")).to_have_value(
                "diffusion, speech recognition"
            )
            expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
            sub = _subscriber(config)
            assert set(sub.topics) == {"llm", "speech", "vision"}
            assert sub.keywords == ("diffusion", "speech recognition")
            assert (sub.frequency, sub.timezone, sub.paused) == ("weekly", "Europe/Berlin", False)

            # the next digest, sent by the CLI like cron would, carries the unsubscribe link
            before = len(smtp_server.received)
            _send(config, NOW)
            digests = [r for r in smtp_server.received[before:] if r.rcpt_tos == (EMAIL,)]
            assert len(digests) == 1, f"{len(digests)} digests for {EMAIL}"
            digest = message_from_bytes(digests[0].data, policy=policy.default)
            header = str(digest["List-Unsubscribe"])
            https = next(p.strip(" <>") for p in header.split(",") if "https://" in p)

            # 7. the link shows a button and changes nothing yet
            page.goto(_local(https, base))
            check("signup-7-unsubscribe", "Unsubscribe")
            assert _subscriber(config).status is SubscriberStatus.ACTIVE
            page.get_by_role("button", name="Unsubscribe").click()

            # 8. out at once
            check("signup-8-unsubscribed", "You are unsubscribed")
            assert _subscriber(config).status is SubscriberStatus.UNSUBSCRIBED
        finally:
            browser.close()

    # a week later, when a weekly subscriber would be due again: nothing is planned or sent
    later = NOW + timedelta(days=7)
    before = len(smtp_server.received)
    _send(config, later, "--no-collect")
    assert EMAIL not in [r.rcpt_tos[0] for r in smtp_server.received[before:]]
    settings = load_config(config)
    store = Store.open(settings.database_url())
    try:
        edition = store.edition(edition_date_for(later, settings.newsletter.timezone), later)
        assert sub.id not in [row["subscriber_id"] for row in store.deliveries(edition)]
    finally:
        store.close()
