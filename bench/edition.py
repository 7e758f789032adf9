"""Time one edition end to end on the bundled sample: compose only, then through SMTP.

    .venv/bin/python bench/edition.py [--subscribers N]

Prints subscribers, messages, seconds and messages per second for (1) rank + render + MIME
(``preview``, no ledger, no SMTP) and (2) a full ``send`` through a local aiosmtpd server
(ledger writes included), plus peak RSS. aiosmtpd tops out near 1,000 msgs/s, so (2) is a
floor for the pipeline, not a measure of a real relay.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from newsletter.collect import collect, source_specs
from newsletter.deliver import SMTPSender
from newsletter.demo import demo_config
from newsletter.models import Subscriber
from newsletter.pipeline import preview, send_edition
from newsletter.smtp_server import LocalSMTPServer
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.subscriptions import Signer

SECRET = "bench-secret-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=2000)
    args = parser.parse_args()
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, LocalSMTPServer() as server:
        config = demo_config(Path(tmp) / "bench.db", server.port)
        topics = [t.id for t in config.topics]
        store = Store.open(config.database_url())
        collect(store, source_specs(config), HttpFetcher(), now)
        for i in range(args.subscribers):
            picked = tuple(rng.sample(topics, rng.randint(1, 2)))
            store.upsert_subscriber(
                Subscriber(0, f"s{i}@bench.example", f"S {i}", topics=picked), now
            )
        signer = Signer([SECRET])

        t0 = time.perf_counter()
        composed = preview(config, store, signer, SECRET, now)
        compose_s = time.perf_counter() - t0
        sizes = sorted(len(c.data) for c in composed)

        t0 = time.perf_counter()
        report = asyncio.run(
            send_edition(config, store, SMTPSender("127.0.0.1", server.port), signer, SECRET, now)
        )
        send_s = time.perf_counter() - t0
        received = len(server.received)
        store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"subscribers           {args.subscribers}")
    print(
        f"compose (rank+render+MIME)  {len(composed)} msgs in {compose_s:.2f} s = "
        f"{len(composed) / compose_s:.0f} msgs/s; message bytes min {sizes[0]} "
        f"median {sizes[len(sizes) // 2]} max {sizes[-1]}"
    )
    print(
        f"send via local aiosmtpd     {report.sent} sent, {received} accepted in "
        f"{send_s:.2f} s = "
        f"{report.sent / send_s:.0f} msgs/s"
    )
    print(f"peak RSS              {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
