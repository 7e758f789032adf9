"""Ranking, table-driven: relevance decides membership, trending orders ties, never twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.models import Signals, StoredPaper, Subscriber, Topic
from newsletter.rank import RankingContext

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def paper(
    pid: str,
    title: str,
    abstract: str = "",
    cats: tuple[str, ...] = (),
    upvotes: int | None = None,
    code: bool = False,
) -> StoredPaper:
    return StoredPaper(
        id=pid,
        title=title,
        abstract=abstract,
        authors=("X",),
        categories=cats,
        url=f"https://arxiv.org/abs/{pid}",
        pdf_url=None,
        code_url="https://github.com/x/y" if code else None,
        project_url=None,
        summary=None,
        keywords=(),
        version=1,
        published=None,
        first_seen=T0,
        sources=("s",),
        signals=Signals(upvotes=upvotes),
    )


PAPERS = [
    paper("1", "Speech recognition with transformers", "asr for low-resource", ("cs.SD",)),
    paper("2", "Image segmentation at scale", "vision", ("cs.CV",), upvotes=50),
    paper("3", "A survey of speech synthesis", "text to speech", ("eess.AS",), upvotes=5),
    paper("4", "Graph neural networks", "molecules", ("cs.LG",), upvotes=500, code=True),
    paper("5", "Speech recognition benchmarks", "asr", ("cs.SD",), upvotes=80),
]
TOPICS = {
    "speech": Topic("speech", "Speech", ("speech recognition", "speech", "asr"), ("cs.SD",)),
    "vision": Topic("vision", "Vision", ("segmentation", "image"), ("cs.CV",)),
}


@pytest.mark.parametrize(
    ("topics", "keywords", "sent", "expected"),
    [
        # relevance decides membership; equal relevance is ordered by trending (upvotes)
        (("speech",), (), set(), ["5", "1", "3"]),
        (("vision",), (), set(), ["2"]),
        # never a paper already sent
        (("speech",), (), {"5"}, ["1", "3"]),
        # own keywords add papers the topics miss
        (("vision",), ("graph neural networks",), set(), ["2", "4"]),
        # no topics and no keywords: the trending list
        ((), (), set(), ["4", "5", "2", "3", "1"]),
        # a topic id the config no longer has is ignored
        (("gone",), (), set(), []),
    ],
)
def test_rank_table(
    topics: tuple[str, ...], keywords: tuple[str, ...], sent: set[str], expected: list[str]
) -> None:
    ctx = RankingContext(PAPERS, TOPICS)
    sub = Subscriber(id=1, email="a@example.org", topics=topics, keywords=keywords)
    assert [i.paper.id for i in ctx.rank(sub, sent, 10)] == expected


def test_max_papers_and_reasons() -> None:
    ctx = RankingContext(PAPERS, TOPICS)
    sub = Subscriber(id=1, email="a@example.org", topics=("speech", "vision"))
    items = ctx.rank(sub, set(), 2)
    assert len(items) == 2
    top = items[0]
    assert top.topic_id == "speech"
    assert "topic: Speech" in top.reasons
    assert any(r.startswith("matches ") and "speech recognition" in r for r in top.reasons)
    assert "80 upvotes" in top.reasons
    assert items[0].score >= items[1].score


def test_title_match_beats_abstract_match() -> None:
    papers = [paper("a", "Nothing here", "we study diffusion"), paper("b", "Diffusion models")]
    ctx = RankingContext(papers, {"d": Topic("d", "D", ("diffusion",))})
    sub = Subscriber(id=1, email="a@example.org", topics=("d",))
    assert [i.paper.id for i in ctx.rank(sub, set(), 5)] == ["b", "a"]


def test_phrases_match_whole_words_only() -> None:
    papers = [paper("a", "Bias in classifiers"), paper("b", "ASR systems")]
    ctx = RankingContext(papers, {"s": Topic("s", "S", ("as", "asr"))})
    sub = Subscriber(id=1, email="a@example.org", topics=("s",))
    assert [i.paper.id for i in ctx.rank(sub, set(), 5)] == ["b"]
