"""Several `serve` instances behind one proxy hold no state of their own: the per-IP limit
and single-use confirmation links work across them (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

pytestmark = pytest.mark.usefixtures("each_backend")


@contextmanager
def _instance(config_path: Path) -> Iterator[tuple[str, Store]]:
    """One `serve`: its own store connection and app, under a real uvicorn server."""
    config = load_config(config_path)
    store = Store.open(config.database_url())
    app = create_app(build_site(config, store, Signer([SECRET]), lambda: NOW))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # readiness, not timing
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_two_instances_share_limits_and_single_use_links(tmp_path: Path) -> None:
    with LocalSMTPServer() as smtp:
        config = write_config(tmp_path, smtp.port, extra="[web]\nsignups_per_ip = 4\n")
        with _instance(config) as (a, store), _instance(config) as (b, _):
            client = httpx.Client(trust_env=False)
            statuses = [
                client.post(f"{base}/subscribe", data={"email": f"p{i}@example.org"}).status_code
                for i, base in enumerate([a, b, a, b, a, b])
            ]
            assert statuses == [200, 200, 200, 200, 429, 429]  # one limit for both
            client.get(f"{a}/healthz")  # the confirmation emails have gone out
            client.get(f"{b}/healthz")
            raw = next(r.data for r in smtp.received if r.rcpt_tos == ("p0@example.org",))
            text = message_from_bytes(raw, policy=policy.default).get_body(("plain",))
            assert text is not None
            link = re.search(r"https://digest\.test\.example(/confirm/\S+)", text.get_content())
            assert link is not None
            assert client.post(a + link.group(1)).status_code == 200  # confirmed on one...
            assert client.post(b + link.group(1)).status_code == 400  # ...used up on the other
            sub = store.subscriber(email="p0@example.org")
            assert sub is not None and sub.status is SubscriberStatus.ACTIVE
