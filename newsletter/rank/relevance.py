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

TITLE_REPEAT = 2
KEYWORD_REPEAT = 3
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
        self.word_sets = [frozenset(t.split()) for t in self.texts]
        self._phrases: dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]] = {}
        self._similarity: npt.NDArray[np.float32] | None = None
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

    @property
    def similarity(self) -> npt.NDArray[np.float32]:
        """Paper-to-paper cosine similarity (dense), for feedback and diversity; built once."""
        if self._similarity is None:
            self._similarity = np.asarray((self.matrix @ self.matrix.T).todense(), dtype=np.float32)
        return self._similarity

    def query(self, text: str) -> Vector:
        """Cosine of a free-text query with every paper, with one round of feedback."""
        row: Vector = self.queries([text])[0]
        return row

    def queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``query`` for many texts in one pass (queries x papers).

        The feedback query is q' = (q + w c/|c|) / |q + w c/|c||, c the mean of a query's
        best matches; its scores follow from the paper similarities, with no second sparse
        product.
        """
        n = len(self.papers)
        out = np.zeros((len(texts), n), dtype=np.float32)
        if self.vectorizer is None or not texts or n == 0:
            return out
        q = self.vectorizer.transform(list(texts))
        first = np.asarray((q @ self.matrix.T).todense(), dtype=np.float32)
        sim = self.similarity
        for i, scores in enumerate(first):
            top = np.argsort(-scores)[:FEEDBACK_DOCS]
            top = top[scores[top] > 0]
            if not len(top):
                out[i] = scores
                continue
            c_norm = float(np.sqrt(max(sim[np.ix_(top, top)].mean(), 1e-12)))
            qc = float(scores[top].mean())  # q . c, with |q| = 1
            w = FEEDBACK_WEIGHT / c_norm
            q2_norm = float(np.sqrt(max(1.0 + 2 * w * qc + FEEDBACK_WEIGHT**2, 1e-12)))
            out[i] = (scores + w * sim[:, top].mean(axis=1)) / q2_norm
        return out

    def _phrase(self, phrase: str) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(holds the phrase as written, holds all of its words), cached per phrase."""
        hit = self._phrases.get(phrase)
        if hit is None:
            needle = normalise(phrase)
            words = set(needle.split())
            hit = (
                np.fromiter((needle in t for t in self.texts), bool, len(self.texts)),
                np.fromiter((words <= ws for ws in self.word_sets), bool, len(self.texts)),
            )
            self._phrases[phrase] = hit
        return hit

    def phrase_mask(self, phrases: Iterable[str]) -> npt.NDArray[np.bool_]:
        """Papers whose text holds any of the phrases as whole words."""
        out = np.zeros(len(self.texts), dtype=bool)
        for p in phrases:
            if p.strip():
                out |= self._phrase(p)[0]
        return out

    def phrase_weight(self, phrases: Sequence[str]) -> Vector:
        """How literally each paper holds one of the phrases: 1 as written, 0.6 with all of
        a phrase's words somewhere, 0.25 otherwise."""
        literal = np.zeros(len(self.texts), dtype=bool)
        words = np.zeros(len(self.texts), dtype=bool)
        for p in phrases:
            if p.strip():
                a, b = self._phrase(p)
                literal |= a
                words |= b
        return np.where(literal, 1.0, np.where(words, 0.6, 0.25)).astype(np.float32)

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
