"""Ranking at scale: 100,000 subscribers x 1,000 papers, top 10 each.

    .venv/bin/python bench/rank_scale.py [--subscribers N] [--papers P] [--topics T]

Reports the time to build the per-edition state (index, topic relevance, similarity), the
time to pick every subscriber's digest (history and diversity included; the median of
``--repeat`` runs, as timings on this machine vary by up to 2x), the same as a ratio to a
bare numpy product of the subscriber-by-topic and topic-by-paper matrices of the same shapes
in the same run, and peak memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from newsletter.models import Signals, StoredPaper, Subscriber, Topic
from newsletter.rank import Ranker, RankSettings

WORDS = (
    "model language vision speech learning graph robot policy diffusion transformer attention "
    "benchmark retrieval reasoning agent token sparse dense kernel latent optimisation gradient "
    "sample data training inference evaluation protein molecule quantum spin lattice galaxy "
    "planet climate ocean brain neuron cortex market auction privacy security compiler code "
    "program database query cache network wireless audio music image video segmentation"
).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(11)
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    papers = [
        StoredPaper(
            f"2611.{i:05d}",
            " ".join(rng.choices(WORDS, k=10)),
            " ".join(rng.choices(WORDS, k=150)),
            ("A B",),
            (rng.choice(["cs.LG", "cs.CL"]),),
            f"https://arxiv.org/abs/2611.{i:05d}",
            None,
            None,
            None,
            None,
            (),
            1,
            now - timedelta(hours=rng.randint(1, 150)),
            now - timedelta(hours=rng.randint(1, 150)),
            ("s",),
            Signals(upvotes=rng.randint(0, 300)),
        )
        for i in range(args.papers)
    ]
    topics = {
        f"t{j}": Topic(
            f"t{j}",
            f"Topic {j}",
            tuple(rng.sample(WORDS, 4)),
            ("cs.LG",),
            " ".join(rng.choices(WORDS, k=12)),
        )
        for j in range(args.topics)
    }
    tids = list(topics)
    subs = [
        Subscriber(
            i,
            f"s{i}@x.example",
            topics=tuple(rng.sample(tids, rng.randint(1, 3))),
            keywords=(rng.choice(WORDS),) if rng.random() < 0.01 else (),
        )
        for i in range(args.subscribers)
    ]
    ids = [p.id for p in papers]
    history = {s.id: set(rng.sample(ids, 5)) for s in subs}

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    ranker = Ranker(papers, topics, RankSettings(), now)
    _ = ranker.similarity
    build_s = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = ranker.rank(subs, history, args.k)
        runs.append(time.perf_counter() - t0)
    rank_s = statistics.median(runs)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    a = np.zeros((args.subscribers, args.topics), dtype=np.float32)
    for i, s in enumerate(subs):
        a[i, [tids.index(t) for t in s.topics]] = 1.0
    r = ranker.topic_matrix.astype(np.float32)
    products = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        _ = a @ r
        products.append(time.perf_counter() - t0)
    matmul_s = statistics.median(products)

    sample = result.items(subs[0].id)
    print(
        f"subscribers x papers     {args.subscribers} x {args.papers}, {args.topics} topics, "
        f"top {args.k}; {ranker.profile_count} distinct profiles, {ranker.groups} groups"
    )
    print(f"per-edition build        {build_s:.2f} s (index, topic relevance, similarity)")
    print(
        f"rank every subscriber    {rank_s:.2f} s median of {args.repeat} "
        f"(min {min(runs):.2f}, max {max(runs):.2f})"
    )
    print(
        f"bare numpy product       {matmul_s:.3f} s ({args.subscribers}x{args.topics} @ "
        f"{args.topics}x{args.papers})"
    )
    print(f"ratio                    {rank_s / matmul_s:.1f}x")
    print(
        f"peak memory (max RSS)    {rss_after:.0f} MB after ranking; {rss_before:.0f} MB "
        "before (the generated papers, subscribers and history)"
    )
    print(f"first digest             {[i.paper.id for i in sample]}")


if __name__ == "__main__":
    main()
