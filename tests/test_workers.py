"""`send --workers 3` on one database (PostgreSQL, and SQLite): 3,000 subscribers to a
recording SMTP server, one worker SIGKILLed midway. Zero misses; a message sent twice only
when its row went through the uncertain window, and then with the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from conftest import NOW, REPO, SECRET, Databases, write_config
from newsletter.collect import collect, source_specs
from newsletter.config import load_config
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.store import schema as t

pytestmark = pytest.mark.usefixtures("each_backend")
N = 3000
# short timeouts so the lease (which must outlast one transaction) is short too: the dead
# worker's rows are taken over after it
EXTRA = "[delivery]\nconnections = 2\nlease_seconds = 14\nretry_base_seconds = 0.05\n"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_three_workers_one_killed_no_miss(tmp_path: Path, each_backend: Databases) -> None:
    handler = RecordingHandler(delay=0.002)
    with LocalSMTPServer(handler) as server:
        path = write_config(tmp_path, server.port, extra=EXTRA)
        path.write_text(
            path.read_text().replace("timeout = 5", "timeout = 2\ndata_timeout = 5"), "utf-8"
        )
        config = load_config(path)
        store = Store.open(config.database_url())
        fetcher = HttpFetcher()
        collect(store, source_specs(config), fetcher, NOW)
        fetcher.close()
        joined = (NOW - timedelta(days=1)).isoformat()
        with store.engine.begin() as conn:
            conn.execute(
                insert(t.subscribers),
                [
                    {
                        "email": f"w{i:04d}@example.org",
                        "name": "",
                        "status": "active",
                        "topics": '["llm"]',
                        "keywords": "[]",
                        "authors": "[]",
                        "exclude": "[]",
                        "frequency": "daily",
                        "timezone": "UTC",
                        "created_at": joined,
                        "updated_at": joined,
                        "confirmed_at": joined,
                    }
                    for i in range(N)
                ],
            )
        store.close()
        env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(REPO)}
        parent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "newsletter",
                "--config",
                str(path),
                "--now",
                NOW.isoformat(),
                "send",
                "--workers",
                "3",
                "--no-collect",
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while len(server.received) < N // 3:  # polling for progress, not timing anything
            assert parent.poll() is None, parent.communicate()
            assert time.monotonic() < deadline, f"only {len(server.received)} sent"
            time.sleep(0.02)
        workers = _children(parent.pid)
        assert len(workers) == 3
        os.kill(workers[0], signal.SIGKILL)
        _out, err = parent.communicate(timeout=240)
        assert parent.returncode == 1, err  # a worker died: said so, the others finished
        received = list(server.received)
    store = Store.open(config.database_url())
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "select s.email, d.status, d.ambiguous, d.message_id from deliveries d "
                "join subscribers s on s.id = d.subscriber_id"
            )
        ).all()
    store.close()
    status = Counter(r[1] for r in rows)
    assert status["sent"] + status["uncertain"] == N and status["pending"] == 0, status
    copies: dict[str, list[str]] = defaultdict(list)
    for r in received:
        msg = message_from_bytes(r.data, policy=policy.default)
        copies[r.rcpt_tos[0]].append(str(msg["Message-ID"]))
    assert len(copies) == N  # zero misses
    ambiguous = {r[0] for r in rows if r[2] > 0}
    twice = {addr for addr, ids in copies.items() if len(ids) > 1}
    assert twice <= ambiguous  # duplicates only in the uncertain window...
    assert all(len(set(copies[a])) == 1 for a in twice)  # ...and with one Message-ID
    assert len(twice) <= 2 * 2  # at most what the dead worker had in flight
