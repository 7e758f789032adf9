"""Rank each subscriber's candidates: topical relevance first, trending signals to order ties.

Pure: papers, topics and history in, ``DigestItem`` values out. Everything that does not
depend on the subscriber (text normalisation, per-topic matches) is computed once per edition
in ``RankingContext``; per subscriber only their topics' scores are combined.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from newsletter.models import DigestItem, StoredPaper, Subscriber, Topic

TITLE_WEIGHT = 3.0
KEYWORD_WEIGHT = 2.0
ABSTRACT_WEIGHT = 1.0
CATEGORY_WEIGHT = 2.0
TRENDING_WEIGHT = 0.01

_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces, padded so phrase matches are whole words."""
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


@dataclass(frozen=True, slots=True)
class _Prepared:
    paper: StoredPaper
    title: str
    abstract: str
    keywords: str
    categories: frozenset[str]
    trending: float


@dataclass(frozen=True, slots=True)
class Match:
    score: float
    terms: tuple[str, ...]
    categories: tuple[str, ...]


def trending_score(paper: StoredPaper) -> float:
    s = paper.signals
    return (
        math.log1p(s.upvotes or 0)
        + 0.5 * math.log1p(s.stars or 0)
        + 0.3 * math.log1p(s.comments or 0)
    )


def match(prepared: _Prepared, terms: Iterable[str], categories: Iterable[str]) -> Match | None:
    """How well one paper matches a set of phrases and categories, or None for no match."""
    score = 0.0
    hit_terms: list[str] = []
    for term in terms:
        needle = normalise(term)
        if needle == "  ":
            continue
        s = (
            TITLE_WEIGHT * (needle in prepared.title)
            + KEYWORD_WEIGHT * (needle in prepared.keywords)
            + ABSTRACT_WEIGHT * (needle in prepared.abstract)
        )
        if s:
            score += s
            hit_terms.append(term)
    hit_cats = tuple(c for c in categories if c in prepared.categories)
    if hit_cats and hit_terms:
        score += CATEGORY_WEIGHT
    elif hit_cats:
        score += CATEGORY_WEIGHT / 2
    if score <= 0:
        return None
    return Match(score, tuple(hit_terms), hit_cats)


class RankingContext:
    """Per-edition state: prepared candidates and each topic's matches, computed once."""

    def __init__(self, papers: Sequence[StoredPaper], topics: Mapping[str, Topic]) -> None:
        self.topics = topics
        self.papers = [
            _Prepared(
                p,
                normalise(p.title),
                normalise(p.abstract),
                normalise(" ; ".join(p.keywords)),
                frozenset(p.categories),
                trending_score(p),
            )
            for p in papers
        ]
        self.topic_matches: dict[str, dict[int, Match]] = {
            tid: self._matches(topic.keywords, topic.categories) for tid, topic in topics.items()
        }
        self._keyword_cache = lru_cache(maxsize=4096)(self._keyword_matches)

    def _matches(self, terms: Sequence[str], categories: Sequence[str]) -> dict[int, Match]:
        out = {}
        for i, prepared in enumerate(self.papers):
            m = match(prepared, terms, categories)
            if m is not None:
                out[i] = m
        return out

    def _keyword_matches(self, keywords: tuple[str, ...]) -> dict[int, Match]:
        return self._matches(keywords, ())

    def rank(
        self, subscriber: Subscriber, already_sent: set[str], max_papers: int
    ) -> list[DigestItem]:
        """The subscriber's digest: best topic match per paper, never a paper already sent."""
        best: dict[int, tuple[Match, str | None]] = {}
        sources: list[tuple[str | None, dict[int, Match]]] = [
            (tid, self.topic_matches[tid]) for tid in subscriber.topics if tid in self.topic_matches
        ]
        if subscriber.keywords:
            sources.append((None, self._keyword_cache(tuple(subscriber.keywords))))
        if not subscriber.topics and not subscriber.keywords:  # no interests: what is trending
            sources.append((None, {i: Match(1.0, (), ()) for i in range(len(self.papers))}))
        for tid, matches in sources:
            for i, m in matches.items():
                if i not in best or m.score > best[i][0].score:
                    best[i] = (m, tid)
        chosen = [
            (i, m, tid)
            for i, (m, tid) in best.items()
            if self.papers[i].paper.id not in already_sent
        ]
        chosen.sort(
            key=lambda x: (-x[1].score, -self.papers[x[0]].trending, self.papers[x[0]].paper.id)
        )
        items = []
        for i, m, tid in chosen[:max_papers]:
            prepared = self.papers[i]
            score = round(m.score + TRENDING_WEIGHT * prepared.trending, 4)
            items.append(
                DigestItem(prepared.paper, score, tid, self._reasons(m, tid, prepared.paper))
            )
        return items

    def _reasons(self, m: Match, tid: str | None, paper: StoredPaper) -> tuple[str, ...]:
        reasons = []
        if tid is not None:
            reasons.append(f"topic: {self.topics[tid].name}")
        if m.terms:
            reasons.append("matches " + ", ".join(m.terms[:4]))
        if m.categories:
            reasons.append(", ".join(m.categories))
        s = paper.signals
        if s.upvotes:
            reasons.append(f"{s.upvotes} upvotes")
        if s.stars:
            reasons.append(f"{s.stars} GitHub stars")
        if paper.code_url:
            reasons.append("code")
        if not m.terms and not m.categories and tid is None:
            reasons.append("trending")
        return tuple(reasons)
