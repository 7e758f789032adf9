"""Time collecting a generated 2,000-item arXiv RSS feed into a fresh SQLite store.

    .venv/bin/python bench/collect.py [--items N]

Prints the feed size, then seconds for: parse only, the first collect (parse + merge of N
new papers), and a second collect of the same feed (everything already stored).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from newsletter.collect import collect
from newsletter.sources import SourceSpec, arxiv_rss
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store

WORDS = (
    "model",
    "language",
    "vision",
    "speech",
    "learning",
    "graph",
    "robot",
    "policy",
    "diffusion",
    "transformer",
    "attention",
    "benchmark",
    "retrieval",
    "reasoning",
    "agent",
    "token",
    "sparse",
    "dense",
    "kernel",
    "latent",
    "optimisation",
    "gradient",
    "sample",
    "data",
    "training",
    "inference",
    "evaluation",
)


def generate(n: int, rng: random.Random) -> bytes:
    items = []
    for i in range(n):
        kind = rng.choices(["new", "cross", "replace"], [0.7, 0.2, 0.1])[0]
        version = 1 if kind != "replace" else rng.randint(2, 4)
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize()
        abstract = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 250)))
        authors = ", ".join(
            f"Author{rng.randint(1, 9999)} Name{rng.randint(1, 999)}"
            for _ in range(rng.randint(1, 12))
        )
        pid = f"2611.{10000 + i:05d}"
        items.append(
            f"<item><title>{escape(title)}</title><link>https://arxiv.org/abs/{pid}</link>"
            f"<description>arXiv:{pid}v{version} Announce Type: {kind} \nAbstract: "
            f'{escape(abstract)}</description><guid isPermaLink="false">oai:arXiv.org:{pid}'
            f"v{version}</guid><category>cs.LG</category><category>cs.AI</category>"
            f"<pubDate>Tue, 24 Nov 2026 00:00:00 -0500</pubDate>"
            f"<arxiv:announce_type>{kind}</arxiv:announce_type>"
            f"<dc:creator>{escape(authors)}</dc:creator></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss xmlns:arxiv="http://arxiv.org/schemas/'
        'atom" xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>'
        "<title>cs.LG updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs.LG</link>"
        "<description>bench</description>" + "".join(items) + "</channel></rss>"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    data = generate(args.items, random.Random(3))
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.xml"
        feed.write_bytes(data)
        t0 = time.perf_counter()
        parsed = arxiv_rss.parse(data, "bench")
        parse_s = time.perf_counter() - t0
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        fetcher = HttpFetcher()
        spec = SourceSpec("bench", "arxiv-rss", str(feed))
        t0 = time.perf_counter()
        [first] = collect(store, [spec], fetcher, now)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        [second] = collect(store, [spec], fetcher, now)
        second_s = time.perf_counter() - t0
        fetcher.close()
        store.close()
    print(f"feed                {args.items} items, {len(data) / 1e6:.1f} MB")
    print(f"parse only          {parse_s:.2f} s ({len(parsed.papers)} papers)")
    print(
        f"first collect       {first_s:.2f} s (new {first.counts.new}, skipped "
        f"{first.counts.skipped} replacements of unknown papers)"
    )
    print(
        f"second collect      {second_s:.2f} s (new {second.counts.new}, "
        f"updated {second.counts.updated})"
    )


if __name__ == "__main__":
    main()
