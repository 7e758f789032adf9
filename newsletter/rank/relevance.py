"""Topical relevance: TF-IDF over each paper's title, abstract and keywords, queried by topics.

Built once per edition over the candidate papers (scikit-learn's vectoriser, scipy sparse
matrices): every topic, and every distinct set of a subscriber's own keywords, is one sparse
query vector, scored against all papers in one product. Field weights come from repeating a
field's text; a round of pseudo-relevance feedback (Rocchio) pulls in the vocabulary of the
best matches, so a topic's papers are found even when they do not use its exact words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.models import StoredPaper, Topic

Vector = npt.NDArray[np.float32]

TITLE_REPEAT = 3
KEYWORD_REPEAT = 2
FEEDBACK_DOCS = 3
FEEDBACK_WEIGHT = 0.35

_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces, padded so phrase tests match whole words."""
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


def _author_key(name: str) -> str:
    return " ".join(normalise(name).split())


def category_matches(wanted: Iterable[str], have: Iterable[str]) -> tuple[str, ...]:
    """Which of the paper's categories a topic asks for; "cond-mat" covers "cond-mat.str-el"."""
    want = tuple(wanted)
    return tuple(c for c in have if any(c == w or c.startswith(w + ".") for w in want))


@dataclass(frozen=True, slots=True)
class Boosts:
    category: float = 0.25
    author: float = 0.5


class PaperIndex:
    """The candidates as one L2-normalised TF-IDF matrix (papers x terms), built once."""

    def __init__(self, papers: Sequence[StoredPaper]) -> None:
        self.papers = papers
        self.texts = [normalise(f"{p.title} {p.abstract} {' '.join(p.keywords)}") for p in papers]
        self.authors = [frozenset(_author_key(a) for a in p.authors) for p in papers]
        docs = [
            " ".join([p.title] * TITLE_REPEAT + [p.abstract] + list(p.keywords) * KEYWORD_REPEAT)
            for p in papers
        ]
        self.vectorizer: TfidfVectorizer | None = TfidfVectorizer(
            sublinear_tf=True,
            ngram_range=(1, 2),
            min_df=1,
            stop_words="english",
            strip_accents="unicode",
            dtype=np.float32,
        )
        if papers and any(d.strip() for d in docs):
            try:
                self.matrix: sparse.csr_matrix = self.vectorizer.fit_transform(docs).tocsr()
            except ValueError:  # only stop words: nothing to index
                self.matrix = sparse.csr_matrix((len(papers), 1), dtype=np.float32)
                self.vectorizer = None
        else:
            self.matrix = sparse.csr_matrix((len(papers), 1), dtype=np.float32)
            self.vectorizer = None

    def similarity(self) -> npt.NDArray[np.float32]:
        """Paper-to-paper cosine similarity (dense), for diversity."""
        return np.asarray((self.matrix @ self.matrix.T).todense(), dtype=np.float32)

    def query(self, text: str) -> Vector:
        """Cosine of a free-text query with every paper, with one round of feedback."""
        n = len(self.papers)
        if self.vectorizer is None or not text.strip():
            return np.zeros(n, dtype=np.float32)
        q = self.vectorizer.transform([text])
        if q.nnz == 0:
            return np.zeros(n, dtype=np.float32)
        scores = np.asarray((self.matrix @ q.T).todense()).ravel()
        top = np.argsort(-scores)[:FEEDBACK_DOCS]
        top = top[scores[top] > 0]
        if len(top):
            centroid = sparse.csr_matrix(self.matrix[top].mean(axis=0))
            q2 = q + FEEDBACK_WEIGHT * centroid / max(sparse.linalg.norm(centroid), 1e-9)
            q2 = q2 / max(sparse.linalg.norm(q2), 1e-9)
            scores = np.asarray((self.matrix @ q2.T).todense()).ravel()
        return scores.astype(np.float32)

    def phrase_mask(self, phrases: Iterable[str]) -> npt.NDArray[np.bool_]:
        """Papers whose text holds any of the phrases as whole words."""
        needles = [normalise(p) for p in phrases if p.strip()]
        return np.array([any(n in t for n in needles) for t in self.texts], dtype=bool)

    def phrase_weight(self, phrases: Sequence[str]) -> Vector:
        """How literally each paper holds one of the phrases: 1 as written, 0.6 with all of
        a phrase's words somewhere, 0.25 otherwise."""
        needles = [normalise(p) for p in phrases if p.strip()]
        word_sets = [set(n.split()) for n in needles]
        out = np.full(len(self.texts), 0.25, dtype=np.float32)
        for i, text in enumerate(self.texts):
            if any(n in text for n in needles):
                out[i] = 1.0
            elif any(ws <= set(text.split()) for ws in word_sets):
                out[i] = 0.6
        return out

    def author_mask(self, names: Iterable[str]) -> npt.NDArray[np.bool_]:
        wanted = {_author_key(n) for n in names if n.strip()}
        return np.array([bool(wanted & a) for a in self.authors], dtype=bool)

    def category_mask(self, categories: Sequence[str]) -> npt.NDArray[np.bool_]:
        return np.array(
            [bool(category_matches(categories, p.categories)) for p in self.papers], dtype=bool
        )


def topic_query(topic: Topic) -> str:
    """The text a topic is searched by: its name, its keywords twice, its description."""
    return " ".join([topic.name, *(list(topic.keywords) * KEYWORD_REPEAT), topic.description])


def topic_relevance(
    index: PaperIndex, topics: Mapping[str, Topic], boosts: Boosts
) -> dict[str, Vector]:
    """Each topic's relevance to every paper: lexical score plus category and author boosts."""
    out = {}
    for tid, topic in topics.items():
        rel = index.query(topic_query(topic))
        if topic.categories:
            rel = rel + boosts.category * index.category_mask(topic.categories)
        if topic.authors:
            rel = rel + boosts.author * index.author_mask(topic.authors)
        out[tid] = rel.astype(np.float32)
    return out
