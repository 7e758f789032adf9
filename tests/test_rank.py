"""Ranking, table-driven: relevance decides membership, trending orders, never twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from newsletter.models import Signals, StoredPaper, Subscriber, Topic
from newsletter.rank import Ranker, RankSettings
from newsletter.rank.select import select
from newsletter.rank.trending import velocity

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def paper(
    pid: str,
    title: str,
    abstract: str = "",
    cats: tuple[str, ...] = (),
    upvotes: int | None = None,
    code: bool = False,
    authors: tuple[str, ...] = ("X Y",),
    days_old: float = 0.5,
) -> StoredPaper:
    return StoredPaper(
        id=pid,
        title=title,
        abstract=abstract,
        authors=authors,
        categories=cats,
        url=f"https://arxiv.org/abs/{pid}",
        pdf_url=None,
        code_url="https://github.com/x/y" if code else None,
        project_url=None,
        summary=None,
        keywords=(),
        version=1,
        published=NOW - timedelta(days=days_old),
        first_seen=NOW - timedelta(days=days_old),
        sources=("s",),
        signals=Signals(upvotes=upvotes),
    )


PAPERS = [
    paper(
        "1",
        "Automatic speech recognition with transformers",
        "We improve ASR word error rate for spoken language.",
        ("cs.SD", "eess.AS"),
    ),
    paper(
        "2",
        "Image segmentation at scale",
        "A vision model segments images.",
        ("cs.CV",),
        upvotes=50,
    ),
    paper(
        "3",
        "Neural speech synthesis",
        "Text to speech with natural prosody and voices.",
        ("eess.AS",),
        upvotes=5,
    ),
    paper(
        "4",
        "Graph neural networks for molecules",
        "Message passing over molecular graphs.",
        ("cs.LG",),
        upvotes=500,
        code=True,
        authors=("Marie Curie",),
    ),
    paper(
        "5",
        "Speech recognition benchmarks",
        "ASR evaluation across accents and noise.",
        ("cs.SD",),
        upvotes=80,
    ),
    paper("6", "Cooking with robots", "Robot arms prepare pasta in a home kitchen.", ("cs.RO",)),
]
TOPICS = {
    "speech": Topic(
        "speech",
        "Speech",
        ("speech recognition", "speech", "ASR"),
        ("cs.SD", "eess.AS"),
        "Recognising and synthesising speech.",
    ),
    "vision": Topic("vision", "Vision", ("segmentation", "image"), ("cs.CV",), "Computer vision."),
}
NO_TRENDS = RankSettings(weight_trending=0.0, weight_recency=0.0, diversity=0.0)


def ranked(
    sub: Subscriber,
    settings: RankSettings = NO_TRENDS,
    sent: set[str] | None = None,
    k: int = 10,
    papers: list[StoredPaper] | None = None,
) -> list[str]:
    ranker = Ranker(papers or PAPERS, TOPICS, settings, NOW)
    result = ranker.rank([sub], {sub.id: sent or set()}, k)
    return [i.paper.id for i in result.items(sub.id)]


def sub(**kw: object) -> Subscriber:
    return Subscriber(1, "a@example.org", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subscriber", "expected"),
    [
        # relevance decides membership: speech papers only, best match first
        (sub(topics=("speech",)), ["5", "1", "3"]),
        (sub(topics=("vision",)), ["2"]),
        # own keywords add what the topics miss
        (sub(topics=("vision",), keywords=("graph neural networks",)), ["2", "4"]),
        # a followed author brings their paper in
        (sub(topics=("vision",), authors=("Marie Curie",)), ["2", "4"]),
        # an excluded keyword rules a paper out
        (sub(topics=("speech",), exclude=("synthesis",)), ["5", "1"]),
        # no topic, no keyword: the trending list
        (sub(), ["4", "5", "2", "3", "1", "6"]),
        # a topic the config no longer has is ignored, and nothing passes
        (sub(topics=("gone",)), []),
    ],
)
def test_relevance_table(subscriber: Subscriber, expected: list[str]) -> None:
    settings = (
        NO_TRENDS
        if subscriber.topics or subscriber.keywords or subscriber.authors
        else replace(NO_TRENDS, weight_trending=1.0)
    )
    assert ranked(subscriber, settings) == expected


def test_threshold_keeps_weak_matches_out() -> None:
    strict = replace(NO_TRENDS, threshold=10.0)
    assert ranked(sub(topics=("speech",)), strict) == []


def test_trending_orders_the_relevant_ones() -> None:
    trending_first = replace(NO_TRENDS, weight_relevance=0.01, weight_trending=1.0)
    # among speech papers, upvotes now decide; the vision paper stays out whatever its votes
    assert ranked(sub(topics=("speech",)), trending_first) == ["5", "3", "1"]


def test_never_a_paper_already_sent() -> None:
    assert ranked(sub(topics=("speech",)), sent={"1", "5"}) == ["3"]


def test_max_papers() -> None:
    assert ranked(sub(topics=("speech",)), k=2) == ["5", "1"]


def test_diversity_spreads_near_duplicates() -> None:
    twins = [
        paper(
            str(i),
            "Speech recognition for noisy call centres",
            "ASR for call centre audio with noise.",
            ("cs.SD",),
        )
        for i in range(5)
    ]
    other = paper("9", "Speech synthesis voices", "Text to speech voices.", ("cs.SD",))
    plain = ranked(sub(topics=("speech",)), NO_TRENDS, k=2, papers=[*twins, other])
    diverse = ranked(
        sub(topics=("speech",)), replace(NO_TRENDS, diversity=0.7), k=2, papers=[*twins, other]
    )
    assert "9" not in plain and "9" in diverse


def test_topic_share_cap_when_following_several() -> None:
    many = [
        paper(f"s{i}", f"Speech recognition study {i}", "ASR speech.", ("cs.SD",), upvotes=100)
        for i in range(6)
    ]
    vision = [
        paper(f"v{i}", f"Image segmentation {i}", "Image segmentation.", ("cs.CV",))
        for i in range(3)
    ]
    capped = replace(NO_TRENDS, max_topic_share=0.5)
    got = ranked(sub(topics=("speech", "vision")), capped, k=4, papers=[*many, *vision])
    assert sum(g.startswith("s") for g in got) == 2 and len(got) == 4
    # one topic only: no cap
    got = ranked(sub(topics=("speech",)), capped, k=4, papers=[*many, *vision])
    assert len(got) == 4 and all(g.startswith("s") for g in got)


def test_reasons_and_parts() -> None:
    ranker = Ranker(PAPERS, TOPICS, RankSettings(), NOW)
    s = sub(topics=("speech",))
    [top, *_] = ranker.rank([s], {}, 3).items(s.id)
    assert top.topic_id == "speech"
    assert top.reasons[0].startswith("Speech: matches ")
    assert "cs.SD" in " ".join(top.reasons)
    assert dict(top.parts).keys() == {"relevance", "trending", "recency"}


def test_many_subscribers_share_profiles_and_keep_their_own_history() -> None:
    ranker = Ranker(PAPERS, TOPICS, NO_TRENDS, NOW)
    subs = [Subscriber(i, f"s{i}@example.org", topics=("speech",)) for i in range(1, 1001)]
    history = {i: {"5"} for i in range(1, 1001, 2)}  # odd ids got paper 5 yesterday
    result = ranker.rank(subs, history, 3)
    assert ranker.profile_count == 1  # one profile scored once
    assert [i.paper.id for i in result.items(1)] == ["1", "3"]
    assert [i.paper.id for i in result.items(2)] == ["5", "1", "3"]


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([], 0.0),
        ([(NOW - timedelta(days=1), 10), (NOW, 40)], 30.0),  # 30 gained in a day
        ([(NOW - timedelta(hours=12), 10), (NOW, 20)], 20.0),
        ([(NOW, 60)], 30.0),  # one reading: averaged since publication (two days ago)
        ([(NOW - timedelta(days=10), 5), (NOW, 60)], 30.0),  # too old to compare: averaged
    ],
)
def test_velocity(readings: list[tuple[datetime, int]], expected: float) -> None:
    assert velocity(readings, NOW - timedelta(days=2), NOW) == pytest.approx(expected)


def test_select_without_candidates_or_slots() -> None:
    empty = np.zeros((1, 0), dtype=np.float32)
    picks = select(
        empty,
        np.zeros((1, 0), dtype=np.int16),
        np.array([0], dtype=np.int32),
        np.array([0], dtype=np.int32),
        [[]],
        np.zeros((1, 0), dtype=np.int64),
        np.zeros((0, 0), dtype=np.float32),
        3,
        0.3,
        0.6,
    )
    assert picks.tolist() == [[-1, -1, -1]]


def test_grouped_selection_is_the_per_subscriber_selection_even_with_ties() -> None:
    import random

    rng = random.Random(5)
    # no signals and one announcement: every paper scores the same for a topic-less reader
    same = [
        paper(f"2611.{i:05d}", f"Paper {i}", "Plain text.", ("cs.LG",), days_old=1)
        for i in range(120)
    ]
    subs = [Subscriber(i, f"s{i}@example.org") for i in range(1, 41)]
    ids = [p.id for p in same]
    history = {s.id: set(rng.sample(ids, rng.choice([0, 1, 5, 60]))) for s in subs}
    together = Ranker(same, TOPICS, RankSettings(), NOW).rank(subs, history, 4)
    for s in subs:
        alone = Ranker(same, TOPICS, RankSettings(), NOW).rank([s], history, 4)
        picked = [i.paper.id for i in together.items(s.id)]
        assert picked == [i.paper.id for i in alone.items(s.id)]
        assert not set(picked) & history[s.id]
        assert len(picked) == 4


def test_topic_cap_reaches_below_a_window_full_of_one_topic() -> None:
    graphs = [
        paper(
            f"g{i:02d}",
            "Image segmentation with graphs",
            "Image segmentation.",
            ("cs.CV",),
            upvotes=900,
        )
        for i in range(40)
    ]
    speech = [paper(f"s{i}", f"Speech recognition {i}", "ASR.", ("cs.SD",)) for i in range(3)]
    got = ranked(
        sub(topics=("speech", "vision")),
        replace(RankSettings(), max_topic_share=0.6),
        k=5,
        papers=[*graphs, *speech],
    )
    assert sum(g.startswith("g") for g in got) == 3
    assert sum(g.startswith("s") for g in got) == 2


# Ages (a: 5 h, b: 29 h, c: 53 h, d: 77 h) of 303 papers with no signals: four announcement
# days, so scores tie in large blocks, the situation in which review found a paper could be
# picked again when the tie order depended on how deep the candidate list was cut.
TIED_AGES = (
    "bdccaacaddbcaadcccddcddddcbdccaacdbaadadcbcdadadbdcdbdbbadaaaddadbdadaccddacdaaacddccadd"
    "aacccddbdddbaddadacaaadcddccadaddcaddcccdacdddcacddaadbadacddccdddcbdcdacddddcdbdddadadd"
    "ccadaaacbbdcdaadddddccdadaddccdaacccdaacdddbdaccddcaddcddbdcddcddadaccdccdccdadaaadaccac"
    "accdacccdcacddddcdcdcadaddccadddcabdcca"
)


def test_ties_never_bring_back_a_sent_paper() -> None:
    hours = {"a": 5, "b": 29, "c": 53, "d": 77}
    papers = [
        paper(
            f"2611.{i:05d}",
            "Graph neural network",
            "Message passing graphs.",
            days_old=hours[age] / 24,
        )
        for i, age in enumerate(TIED_AGES)
    ]
    alice, bob = Subscriber(1, "alice@example.org"), Subscriber(2, "bob@example.org")
    oldest = sorted(papers, key=lambda p: (p.published, p.id))[:101]
    history = {1: {papers[253].id}, 2: {p.id for p in oldest}}
    together = Ranker(papers, {}, RankSettings(), NOW).rank([alice, bob], history, 4).items(1)
    alone = Ranker(papers, {}, RankSettings(), NOW).rank([alice], history, 4).items(1)
    assert papers[253].id not in [i.paper.id for i in together]
    assert [i.paper.id for i in together] == [i.paper.id for i in alone]


def test_leading_order_is_one_total_order_whatever_the_depth() -> None:
    """The grouping decides from a deep cut which sent papers matter; selection picks from a
    shallower one. Both must be prefixes of one order, ties broken by column."""
    from newsletter.rank.select import leading

    rng = np.random.default_rng(3)
    scores = rng.choice(np.array([0.1, 0.2, 0.3, -np.inf], dtype=np.float32), size=(50, 300))
    deep = leading(scores, 200)
    for depth in (1, 7, 33, 120):
        assert (leading(scores, depth) == deep[:, :depth]).all()
    row = deep[0]
    ranked_scores = scores[0][row]
    assert (np.diff(ranked_scores[np.isfinite(ranked_scores)]) <= 0).all()
    ties = row[:-1][ranked_scores[:-1] == ranked_scores[1:]]
    assert all(
        a < b for a, b in zip(ties, row[1:][ranked_scores[:-1] == ranked_scores[1:]], strict=True)
    )
