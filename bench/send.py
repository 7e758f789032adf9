"""End-to-end send speed against Postfix's smtp-sink, next to smtp-source on the same sink.

    .venv/bin/python bench/send.py [--subscribers 10000] [--connections 4] [--max-papers 10]

Runs one whole edition (plan, rank, render, build MIME, claim, SMTP, record) for N
subscribers on the bundled sample into ``smtp-sink`` on 127.0.0.1, then has ``smtp-source``
send N messages of our median size with the same number of sessions to the same sink.
Prints both rates, their ratio, the message sizes and this process's peak RSS (run it at
10,000 and 100,000 to see memory stay flat). ``smtp-sink``/``smtp-source`` come with the
Debian package ``postfix``; without them the send goes to an in-process aiosmtpd server
and no ratio is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newsletter.collect import collect, source_specs
from newsletter.config import Config, SourceConfig
from newsletter.deliver import Sender, SMTPSender
from newsletter.demo import demo_config
from newsletter.engine import DeliverySettings
from newsletter.models import OutgoingMessage, SendResult
from newsletter.sending import SendContext, send_edition
from newsletter.smtp_server import LocalSMTPServer
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.store import schema as t
from newsletter.subscriptions import Signer

sys.path.insert(0, str(Path(__file__).parent))
from collect import generate

SECRET = "bench-secret-0123456789"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sink() -> Iterator[tuple[int, str]]:
    """smtp-sink on a free port (or aiosmtpd when Postfix's test tools are absent)."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(binary):
        with LocalSMTPServer() as server:
            server.handler.received = _Discard()
            yield server.port, "aiosmtpd (in process; install postfix for smtp-sink)"
        return
    port = free_port()
    cmd = [binary, f"127.0.0.1:{port}", "1000"]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "nobody"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"smtp-sink exited: {stderr}") from None
                time.sleep(0.02)
        yield port, "smtp-sink"
    finally:
        proc.terminate()
        proc.wait()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, _item: object) -> None:
        pass


def add_subscribers(store: Store, n: int, topics: list[str]) -> None:
    stamp = NOW.isoformat()
    rows = (
        {
            "email": f"s{i}@bench.example",
            "name": f"Reader {i}",
            "status": "active",
            "topics": f'["{topics[i % len(topics)]}"]'
            if i % 3
            else f'["{topics[i % len(topics)]}", "{topics[(i + 1) % len(topics)]}"]',
            "keywords": "[]",
            "authors": "[]",
            "exclude": "[]",
            "frequency": "daily",
            "timezone": "UTC",
            "created_at": stamp,
            "updated_at": stamp,
            "confirmed_at": stamp,
        }
        for i in range(n)
    )
    batch: list[dict[str, str]] = []
    with store.engine.begin() as conn:
        for row in rows:
            batch.append(row)
            if len(batch) == 5000:
                conn.execute(t.subscribers.insert(), batch)
                batch = []
        if batch:
            conn.execute(t.subscribers.insert(), batch)


class SizeRecorder:
    """Wraps each connection to note message sizes (a sample, not every one)."""

    def __init__(self, connect: Callable[[], Sender]) -> None:
        self.connect, self.sizes = connect, []  # type: ignore[var-annotated]

    def __call__(self) -> Sender:
        inner = self.connect()
        outer = self

        class Recording:
            async def send(self, message: OutgoingMessage) -> SendResult:
                if len(outer.sizes) < 2000:
                    outer.sizes.append(len(message.data))
                return await inner.send(message)

            async def close(self) -> None:
                await inner.close()

        return Recording()


def smtp_source(port: int, messages: int, size: int, sessions: int) -> float | None:
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.path.exists(binary):
        return None
    cmd = [binary, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    cmd += ["-f", "digest@bench.example", "-t", "reader@bench.example", f"127.0.0.1:{port}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--max-papers", type=int, default=10)
    parser.add_argument(
        "--papers",
        type=int,
        default=0,
        help="generate this many papers (bench/collect.py's feed) instead of the sample; "
        "with --max-papers 40 the messages are about 87 KB",
    )
    parser.add_argument(
        "--database",
        help="an empty database URL to use instead of a SQLite file (e.g. PostgreSQL)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="send with N worker processes (send --workers N's path) instead of in-process",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sink() as (port, server_name):
        config = demo_config(Path(tmp) / "bench.db", port)
        if args.database:
            config = config.model_copy(
                update={
                    "newsletter": config.newsletter.model_copy(update={"database": args.database})
                }
            )
        if args.papers:
            feed = Path(tmp) / "feed.xml"
            feed.write_bytes(generate(args.papers, random.Random(7)))
            config = config.model_copy(
                update={"sources": [SourceConfig(name="bench", kind="arxiv-rss", url=str(feed))]}
            )
        config = config.model_copy(
            update={
                "digest": config.digest.model_copy(update={"max_papers": args.max_papers}),
                "ranking": config.ranking.model_copy(update={"semantic": "off"}),
            }
        )
        store = Store.open(config.database_url())
        fetcher = HttpFetcher()
        collect(store, source_specs(config), fetcher, NOW)
        fetcher.close()
        add_subscribers(store, args.subscribers, [tp.id for tp in config.topics])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        if args.workers:
            store.close()
            sent, skipped, ours_s, sizes = _with_workers(config, port, args)
            median = int(statistics.median(sizes or [0]))
            ours = sent / ours_s
            print(f"server                 {server_name} on 127.0.0.1:{port}")
            print(
                f"subscribers            {args.subscribers}  workers {args.workers}  "
                f"connections {args.connections} each"
            )
            print(f"message bytes          median {median}")
            print(
                f"newsletter send        {sent} sent, {skipped} nothing new in {ours_s:.2f} s"
                f" = {ours:.0f} msgs/s ({args.workers} workers, rank and render included)"
            )
            total = args.connections * args.workers
            source = smtp_source(port, max(sent, 100), median, total)
            if source is not None:
                print(
                    f"smtp-source            {source:.0f} msgs/s ({median} bytes, {total} sessions)"
                )
                print(f"ratio                  {ours / source:.2f} of smtp-source")
            return
        ctx, connect = _context(config, store, port, args.connections)
        start = time.perf_counter()
        report = asyncio.run(send_edition(ctx))
        ours_s = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        store.close()
        sizes = sorted(connect.sizes) or [0]
        median = int(statistics.median(sizes))
        ours = report.sent / ours_s
        print(f"server                 {server_name} on 127.0.0.1:{port}")
        print(f"subscribers            {args.subscribers}  connections {args.connections}")
        print(f"message bytes          min {sizes[0]}  median {median}  max {sizes[-1]}")
        print(
            f"newsletter send        {report.sent} sent, {report.skipped_empty} nothing new, "
            f"{report.failed} failed in {ours_s:.2f} s = {ours:.0f} msgs/s"
            f" (engine only {report.rate:.0f} msgs/s)"
        )
        source = smtp_source(port, max(report.sent, 100), median, args.connections)
        if source is not None:
            print(f"smtp-source            {source:.0f} msgs/s ({median} bytes, same sessions)")
            print(f"ratio                  {ours / source:.2f} of smtp-source")
        print(f"peak RSS               {peak:.0f} MB (after setup {rss_before:.0f} MB)")
        sys.stdout.flush()


def _context(
    config: Config, store: Store, port: int, connections: int
) -> tuple[SendContext, SizeRecorder]:
    connect = SizeRecorder(lambda: SMTPSender("127.0.0.1", port, timeout=30))
    settings = DeliverySettings(connections=connections, max_per_connection=1000)
    ctx = SendContext(config, store, connect, Signer([SECRET]), SECRET, NOW, settings=settings)
    return ctx, connect


def _worker(config: Config, port: int, connections: int, out: Any) -> None:
    """One worker process: a store of its own, then ``work_edition`` (as ``send --worker``)."""
    from newsletter.workers import work_edition

    store = Store.open(config.database_url())
    ctx, connect = _context(config, store, port, connections)
    ctx.exclusive = False
    report = asyncio.run(work_edition(ctx))
    store.close()
    out.put((report.sent, report.skipped_empty, connect.sizes[:1000]))


def _with_workers(
    config: Config, port: int, args: argparse.Namespace
) -> tuple[int, int, float, list[int]]:
    """Plan once, then fork the workers; the time runs from the fork to the last one done."""
    import multiprocessing

    from newsletter.workers import plan_edition

    store = Store.open(config.database_url())
    plan_edition(SendContext(config, store, lambda: None, Signer([SECRET]), SECRET, NOW))  # type: ignore[arg-type, return-value]
    store.close()
    mp = multiprocessing.get_context("fork")
    out = mp.Queue()
    start = time.perf_counter()
    procs = [
        mp.Process(target=_worker, args=(config, port, args.connections, out))
        for _ in range(args.workers)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    sizes = sorted(x for r in results for x in r[2])
    return sum(r[0] for r in results), sum(r[1] for r in results), seconds, sizes


if __name__ == "__main__":
    main()
