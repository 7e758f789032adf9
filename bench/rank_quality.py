"""Ranking quality on the captured arXiv feeds: nDCG@10 and precision@10 per method.

    .venv/bin/python bench/rank_quality.py [--fixtures ../shared/fixtures]

The papers are every entry of the captured arXiv RSS and API feeds; the topics are written
as an operator would (name, keywords, description, arXiv categories); a paper is relevant
to a topic when it is listed in one of the topic's categories. Methods compared:

* keyword filter: papers holding a topic keyword, by number of keywords held;
* TF-IDF description: cosine of the topic description with title + abstract;
* ours, lexical only: our relevance without the category boost (text alone);
* ours: our relevance as the digest uses it (text, feedback, category boost).

Because the labels come from categories, "ours" benefits from the category boost by
construction; "ours, lexical only" is the fair comparison of the text model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.models import StoredPaper, Topic
from newsletter.rank import Ranker, RankSettings
from newsletter.rank.relevance import Boosts, PaperIndex, category_matches, topic_relevance
from newsletter.rank.semantic import Encoder, load_encoder, paper_text
from newsletter.sources import arxiv_api, arxiv_rss

TOPICS = [
    Topic(
        "nlp",
        "Natural language processing",
        ("language model", "LLM", "text", "translation", "question answering", "tokenizer"),
        ("cs.CL",),
        "Language models and NLP: text understanding and generation, translation, "
        "question answering, dialogue and evaluation of LLMs.",
    ),
    Topic(
        "se",
        "Software engineering",
        ("software", "code", "program", "bug", "testing", "developer"),
        ("cs.SE",),
        "Tools and methods for building software: code generation, program "
        "repair, testing, bugs and developer workflows.",
    ),
    Topic(
        "vision",
        "Computer vision",
        ("image", "video", "visual", "segmentation", "detection"),
        ("cs.CV",),
        "Seeing machines: images and video, recognition, detection, segmentation "
        "and generation of visual content.",
    ),
    Topic(
        "condmat",
        "Condensed matter physics",
        ("quantum", "spin", "lattice", "superconductor", "phase transition", "electrons"),
        ("cond-mat",),
        "Matter at low energy: spin systems, lattice models, superconductivity, "
        "phase transitions and many-body quantum physics.",
    ),
    Topic(
        "neuro",
        "Computational neuroscience",
        ("neurons", "brain", "cortex", "neural activity", "spiking"),
        ("q-bio.NC",),
        "How brains compute: neurons, cortical circuits, neural recordings and "
        "models of learning in the brain.",
    ),
    Topic(
        "ir",
        "Information retrieval",
        ("retrieval", "search", "recommendation", "ranking", "RAG"),
        ("cs.IR",),
        "Finding things: search engines, retrieval-augmented generation, ranking "
        "and recommender systems.",
    ),
    Topic(
        "statml",
        "Statistical machine learning",
        ("bayesian", "inference", "kernel", "estimation", "gaussian process", "generalization"),
        ("stat.ML",),
        "Statistical foundations of learning: Bayesian inference, kernels, "
        "estimation, uncertainty and generalization.",
    ),
]


def load(fixtures: Path) -> list[StoredPaper]:
    from datetime import UTC, datetime

    from newsletter.models import Signals

    papers = {}
    for f in sorted((fixtures / "arxiv-rss").glob("*.xml")):
        for p in arxiv_rss.parse(f.read_bytes(), "rss").papers:
            papers[p.id] = p
    for f in sorted((fixtures / "arxiv-api").iterdir()):
        data = f.read_bytes()
        if f.suffix == ".json":
            data = json.loads(data)["body"].encode()
        try:
            parsed = arxiv_api.parse(data, "api")
        except Exception:
            continue  # the recorded error response
        for p in parsed.papers:
            papers[p.id] = p
    now = datetime(2026, 11, 24, tzinfo=UTC)
    return [
        StoredPaper(
            p.id,
            p.title,
            p.abstract,
            p.authors,
            p.categories,
            p.url,
            p.pdf_url,
            None,
            None,
            None,
            p.keywords,
            p.version,
            p.published,
            now,
            ("x",),
            Signals(),
        )
        for p in papers.values()
    ]


def ndcg_at(ranking: list[int], relevant: set[int], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def precision_at(ranking: list[int], relevant: set[int], k: int = 10) -> float:
    return sum(1 for d in ranking[:k] if d in relevant) / k


def keyword_filter(papers: list[StoredPaper], topic: Topic) -> list[int]:
    hits = []
    for i, p in enumerate(papers):
        text = f"{p.title} {p.abstract}".lower()
        n = sum(1 for kw in topic.keywords if kw.lower() in text)
        if n:
            hits.append((-n, i))
    return [i for _, i in sorted(hits)]


def tfidf_description(papers: list[StoredPaper], topic: Topic) -> list[int]:
    vec = TfidfVectorizer(stop_words="english")
    docs = vec.fit_transform([f"{p.title} {p.abstract}" for p in papers])
    scores = (docs @ vec.transform([topic.description]).T).toarray().ravel()
    return [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]


def ours(papers: list[StoredPaper], topic: Topic, boosts: Boosts) -> list[int]:
    scores = topic_relevance(PaperIndex(papers), {topic.id: topic}, boosts)[topic.id]
    return [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]


def ours_semantic(
    papers: list[StoredPaper],
    topic: Topic,
    boosts: Boosts,
    encoder: Encoder,
    embeddings: np.ndarray,
) -> list[int]:
    """The digest's relevance with the semantic model: the Ranker's topic row."""
    from datetime import UTC, datetime

    settings = RankSettings(boosts=boosts)
    ranker = Ranker(
        papers,
        {topic.id: topic},
        settings,
        datetime.now(UTC),
        encoder=encoder,
        embeddings=embeddings,
    )
    scores = ranker.topic_matrix[0]
    return [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    parser.add_argument("--fixtures", type=Path, default=default)
    args = parser.parse_args()
    papers = load(args.fixtures)
    methods = {
        "keyword filter": keyword_filter,
        "TF-IDF description": tfidf_description,
        "ours, lexical only": lambda ps, t: ours(ps, t, Boosts(category=0.0, author=0.0)),
        "ours": lambda ps, t: ours(ps, t, Boosts()),
    }
    encoder = load_encoder()
    if encoder is None:
        print("(semantic extra not installed: the MiniLM rows are left out)")
    else:
        emb = encoder.encode([paper_text(p) for p in papers])
        methods["MiniLM cosine"] = lambda ps, t: [
            int(i)
            for i in np.argsort(
                -(emb @ encoder.encode([f"{t.name}. {t.description}"])[0]), kind="stable"
            )
        ]
        methods["ours + MiniLM, no cats"] = lambda ps, t: ours_semantic(
            ps, t, Boosts(category=0.0, author=0.0), encoder, emb
        )
        methods["ours + MiniLM"] = lambda ps, t: ours_semantic(ps, t, Boosts(), encoder, emb)
    print(f"{len(papers)} papers, {len(TOPICS)} topics")
    print(f"{'method':22} {'nDCG@10':>8} {'P@10':>6}")
    for name, method in methods.items():
        nd, pr = [], []
        for topic in TOPICS:
            relevant = {
                i for i, p in enumerate(papers) if category_matches(topic.categories, p.categories)
            }
            ranking = method(papers, topic)
            nd.append(ndcg_at(ranking, relevant))
            pr.append(precision_at(ranking, relevant))
        print(f"{name:22} {np.mean(nd):8.3f} {np.mean(pr):6.3f}")


if __name__ == "__main__":
    main()
