"""The issue's acceptance check, literally: a real ``newsletter serve`` process, and
``curl -X POST -d List-Unsubscribe=One-Click <URL from a sent message's header>``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from conftest import NOW, REPO, SECRET, write_config
from newsletter.cli import run
from newsletter.config import load_config
from newsletter.models import SubscriberStatus
from newsletter.smtp_server import LocalSMTPServer
from newsletter.store import Store

CURL = shutil.which("curl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(CURL is None, reason="needs the curl command")
def test_curl_one_click_unsubscribes_and_the_next_send_skips(
    tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    config = write_config(tmp_path, smtp_server.port)
    roster = REPO / "subscribers" / "demo.toml"
    assert run(["--config", str(config), "subscribers", "import", str(roster)]) == 0
    assert run(["--config", str(config), "--now", NOW.isoformat(), "send"]) == 0
    raw = next(r.data for r in smtp_server.received if r.rcpt_tos == ("ada@example.org",))
    header = str(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"])
    url = header.split(",")[0].strip().strip("<>")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
        env={**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness, not timing
            try:
                if httpx.get(f"{base}/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        local = url.replace("https://digest.test.example", base)
        assert CURL is not None
        done = subprocess.run(
            [
                CURL,
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-X",
                "POST",
                "-d",
                "List-Unsubscribe=One-Click",
                local,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "200"  # and no redirect
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = Store.open(load_config(config).database_url())
    try:
        sub = store.subscriber(email="ada@example.org")
        assert sub is not None and sub.status is SubscriberStatus.UNSUBSCRIBED
    finally:
        store.close()
    before = len(smtp_server.received)
    tomorrow = (NOW + timedelta(days=1)).isoformat()
    assert run(["--config", str(config), "--now", tomorrow, "send", "--no-collect"]) in (0, 3)
    later = [r.rcpt_tos[0] for r in smtp_server.received[before:]]
    assert later and "ada@example.org" not in later
