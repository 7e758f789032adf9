"""The web app under a real uvicorn server on 127.0.0.1: RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
import uvicorn

from conftest import NOW, SECRET, write_config
from newsletter.config import load_config
from newsletter.models import SubscriberStatus
from newsletter.smtp_server import LocalSMTPServer
from newsletter.store import Store
from newsletter.subscriptions import Signer
from newsletter.web import create_app
from newsletter.web.build import build_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Store, LocalSMTPServer, Path]]:
    """A store with the demo roster and sample papers, an SMTP server, and the web app."""
    from newsletter.cli import run

    smtp = LocalSMTPServer()
    smtp.start()
    config = write_config(tmp_path, smtp.port)
    roster = Path(__file__).resolve().parents[1] / "subscribers" / "demo.toml"
    assert run(["--config", str(config), "subscribers", "import", str(roster)]) == 0
    assert run(["--config", str(config), "--now", NOW.isoformat(), "send"]) == 0
    store = Store.open(load_config(config).database_url())
    app = create_app(build_site(load_config(config), store, Signer([SECRET]), lambda: NOW))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for readiness, not measuring time
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", store, smtp, config
    server.should_exit = True
    thread.join(timeout=10)
    store.close()
    smtp.stop()


def _unsubscribe_url(smtp: LocalSMTPServer, base: str, address: str) -> str:
    raw = next(r.data for r in smtp.received if r.rcpt_tos == (address,))
    header = str(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"])
    https = header.split(",")[0].strip().strip("<>")
    assert https.startswith("https://digest.test.example/unsubscribe/")
    return https.replace("https://digest.test.example", base)


def _status(store: Store, email: str) -> SubscriberStatus:
    sub = store.subscriber(email=email)
    assert sub is not None
    return sub.status


@pytest.mark.parametrize("multipart", [False, True])
def test_one_click_post_unsubscribes_at_once(
    site: tuple[str, Store, LocalSMTPServer, Path], multipart: bool
) -> None:
    base, store, smtp, config = site
    url = _unsubscribe_url(smtp, base, "ada@example.org")
    client = httpx.Client(trust_env=False, follow_redirects=False)
    if multipart:
        response = client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    else:
        response = client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200 and "location" not in response.headers
    assert not response.cookies
    assert _status(store, "ada@example.org") is SubscriberStatus.UNSUBSCRIBED
    from newsletter.cli import run

    before = len(smtp.received)
    tomorrow = (NOW + timedelta(days=1)).isoformat()
    assert run(["--config", str(config), "--now", tomorrow, "send", "--no-collect"]) in (0, 3)
    assert "ada@example.org" not in [r.rcpt_tos[0] for r in smtp.received[before:]]


def test_get_shows_a_button_and_changes_nothing(
    site: tuple[str, Store, LocalSMTPServer, Path],
) -> None:
    base, store, smtp, _ = site
    url = _unsubscribe_url(smtp, base, "alan@example.org")
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200 and "<button" in response.text
    assert _status(store, "alan@example.org") is SubscriberStatus.ACTIVE
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"


def test_every_invalid_token_gets_the_same_answer(
    site: tuple[str, Store, LocalSMTPServer, Path],
) -> None:
    base, store, smtp, _ = site
    good = _unsubscribe_url(smtp, base, "grace@example.org")
    token = good.rsplit("/", 1)[1]
    signer = Signer([SECRET])
    bad = [
        token[:-3] + "xyz",
        token[:10],
        signer.make("archive", 1),
        signer.make("unsubscribe", 99999),
        Signer(["another-key-0123456"]).make("unsubscribe", 1),
    ]
    answers = set()
    for t in bad:
        r = httpx.post(
            f"{base}/unsubscribe/{t}", data={"List-Unsubscribe": "One-Click"}, trust_env=False
        )
        answers.add((r.status_code, r.text))
    assert len(answers) == 1 and next(iter(answers))[0] == 400
    assert _status(store, "grace@example.org") is SubscriberStatus.ACTIVE


def test_oversized_body_is_refused(site: tuple[str, Store, LocalSMTPServer, Path]) -> None:
    base, _, smtp, _ = site
    url = _unsubscribe_url(smtp, base, "emmy@example.org")
    r = httpx.post(
        url,
        content=b"x" * 20_000,
        trust_env=False,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


def test_chunked_oversized_body_is_refused_too(
    site: tuple[str, Store, LocalSMTPServer, Path],
) -> None:
    base, store, smtp, _ = site
    url = _unsubscribe_url(smtp, base, "emmy@example.org")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b"List-Unsubscribe=One-Click"
        for _ in range(40):
            yield b"&x=" + b"y" * 1000

    r = httpx.post(
        url,
        content=chunks(),
        trust_env=False,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    assert r.headers["x-content-type-options"] == "nosniff"
    assert _status(store, "emmy@example.org") is SubscriberStatus.ACTIVE
