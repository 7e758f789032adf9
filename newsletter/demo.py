"""``newsletter demo``: the whole pipeline on the bundled sample, needing no config or network.

A temporary SQLite store, the demo roster, and a local SMTP server started here on
127.0.0.1; what the server received is written to ``out/demo/``.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter.collect import CollectRow, collect, source_specs
from newsletter.config import Config, load_config
from newsletter.config_delivery import SMTPSection
from newsletter.gallery import write_gallery
from newsletter.models import RunReport
from newsletter.rank.semantic import load_encoder
from newsletter.resources import bundled, sample_dir
from newsletter.sending import SendContext, send_edition, smtp_connect
from newsletter.smtp_server import LocalSMTPServer
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.subscriptions import Signer, read_roster


@dataclass(slots=True)
class DemoResult:
    collected: list[CollectRow]
    report: RunReport
    received: int
    index: Path


def demo_config(database: Path, smtp_port: int) -> Config:
    base = load_config(sample_dir() / "config.toml")
    return base.model_copy(
        update={
            "newsletter": base.newsletter.model_copy(update={"database": str(database)}),
            "smtp": SMTPSection(host="127.0.0.1", port=smtp_port, security="none", timeout=10),
        }
    )


def run_demo(out_dir: Path, now: datetime) -> DemoResult:
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="newsletter-demo-") as tmp, LocalSMTPServer() as server:
        config = demo_config(Path(tmp) / "demo.db", server.port)
        store = Store.open(config.database_url())
        try:
            roster = read_roster(
                bundled("subscribers") / "demo.toml", topic_ids={t.id for t in config.topics}
            )
            for row in roster.rows:
                store.upsert_subscriber(row.subscriber, now)
            fetcher = HttpFetcher()
            try:
                collected = collect(store, source_specs(config), fetcher, now)
            finally:
                fetcher.close()
            report = asyncio.run(
                send_edition(
                    SendContext(
                        config,
                        store,
                        smtp_connect(config),
                        Signer([secret]),
                        secret,
                        now,
                        encoder=load_encoder() if config.ranking.semantic == "auto" else None,
                    )
                )
            )
        finally:
            store.close()
        received = server.received
    index = write_gallery(
        out_dir,
        [(r.rcpt_tos[0], r.data) for r in received],
        f"{config.newsletter.name}: demo edition",
    )
    return DemoResult(collected, report, len(received), index)
