"""Rendering speed: compile MJML once (ours) against compiling it for every subscriber.

    .venv/bin/python bench/render.py [--subscribers N]

Ranks the bundled sample for N generated subscribers, then renders every digest both ways in
the same run and prints emails/s for each, the ratio, whether the outputs are identical, and
the HTML size (min, median, max).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mjml import mjml2html

from newsletter.collect import collect, source_specs
from newsletter.demo import demo_config
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.pipeline import Edition
from newsletter.render import HTML_TEMPLATE
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.subscriptions import Signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=2000)
    args = parser.parse_args()
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp) / "bench.db", 2525)
        store = Store.open(config.database_url())
        collect(store, source_specs(config), HttpFetcher(), now)
        topics = [t.id for t in config.topics]
        for i in range(args.subscribers):
            store.upsert_subscriber(
                Subscriber(
                    0, f"s{i}@bench.example", f"Reader {i}", topics=tuple(rng.sample(topics, 2))
                ),
                now,
            )
        edition = Edition(config, store, now)
        subs = store.subscribers(SubscriberStatus.ACTIVE)
        ranked = edition.rank(subs)
        signer = Signer(["bench-secret-0123456789"])
        jobs = [(edition.digest(s, ranked), edition.links(signer, s)) for s in subs]
        renderer = edition.renderer
        store.close()

    t0 = time.perf_counter()
    ours = [renderer.render(d, links) for d, links in jobs]
    ours_s = time.perf_counter() - t0

    source = renderer._expand(renderer._source(HTML_TEMPLATE)[0])
    t0 = time.perf_counter()
    naive = [
        renderer._html_env.from_string(mjml2html(source)).render(renderer.context(d, links))
        for d, links in jobs
    ]
    naive_s = time.perf_counter() - t0

    sizes = sorted(len(e.html.encode()) for e in ours)
    same = sum(e.html == h for e, h in zip(ours, naive, strict=True))
    n = len(jobs)
    print(f"digests                    {n} (sample feeds, 2 topics each)")
    print(f"ours: MJML compiled once   {n / ours_s:,.0f} emails/s (HTML + text + subject)")
    print(f"MJML per subscriber        {n / naive_s:,.0f} emails/s (HTML only)")
    print(f"ratio                      {naive_s / ours_s:.1f}x")
    print(f"identical HTML             {same} of {n}")
    print(
        f"HTML bytes                 min {sizes[0]:,}  median {statistics.median(sizes):,.0f}  "
        f"max {sizes[-1]:,}"
    )


if __name__ == "__main__":
    main()
