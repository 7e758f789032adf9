"""Ranking: each subscriber's digest, from relevance, trending and recency, with reasons.

``Ranker`` does everything that does not depend on the subscriber once per edition (the
TF-IDF index, each topic's relevance, trending, recency, paper similarity). Subscribers with
the same interests share a *profile*, scored once; choosing each subscriber's papers (minus
what they were sent before) is vectorised in ``select``. Relevance decides whether a paper
belongs at all (the threshold); relevance, trending and recency, weighted, order the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from newsletter.models import DigestItem, StoredPaper, Subscriber, Topic
from newsletter.rank.reasons import reasons
from newsletter.rank.relevance import Boosts, PaperIndex, topic_relevance
from newsletter.rank.select import select, sent_columns
from newsletter.rank.trending import Reading, TrendWeights, recency, trending

ProfileKey = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RankSettings:
    """The knobs, from ``[ranking]`` in the config."""

    threshold: float = 0.12
    weight_relevance: float = 1.0
    weight_trending: float = 0.5
    weight_recency: float = 0.25
    diversity: float = 0.3
    max_topic_share: float = 0.6
    boosts: Boosts = field(default_factory=Boosts)
    trend: TrendWeights = field(default_factory=TrendWeights)


def profile_key(sub: Subscriber) -> ProfileKey:
    """What a subscriber's digest depends on besides their history."""
    return (
        tuple(sorted(set(sub.topics))),
        tuple(sorted({k.strip().lower() for k in sub.keywords if k.strip()})),
        tuple(sorted({a.strip() for a in sub.authors if a.strip()})),
        tuple(sorted({x.strip().lower() for x in sub.exclude if x.strip()})),
    )


@dataclass(slots=True)
class _Profile:
    final: npt.NDArray[np.float32]
    relevance: npt.NDArray[np.float32]
    best_topic: npt.NDArray[np.int16]
    topic_count: int


class Ranker:
    """Everything per edition; ``rank`` picks for many subscribers at once."""

    def __init__(
        self,
        papers: Sequence[StoredPaper],
        topics: Mapping[str, Topic],
        settings: RankSettings,
        now: datetime,
        signal_history: Mapping[str, Sequence[Reading]] | None = None,
    ) -> None:
        self.papers = list(papers)
        self.topics = dict(topics)
        self.topic_ids = list(self.topics)
        self.settings = settings
        self.index = PaperIndex(self.papers)
        self.column = {p.id: i for i, p in enumerate(self.papers)}
        rel = topic_relevance(self.index, self.topics, settings.boosts)
        self.topic_matrix = (
            np.stack([rel[t] for t in self.topic_ids])
            if self.topic_ids
            else np.zeros((0, len(self.papers)), dtype=np.float32)
        )
        self.trending, self.velocity = trending(
            self.papers, signal_history or {}, now, settings.trend
        )
        self.recency = recency(self.papers, now, settings.trend.half_life_days)
        self._similarity: npt.NDArray[np.float32] | None = None
        self._profiles: dict[ProfileKey, int] = {}
        self._rows: list[_Profile] = []

    @property
    def similarity(self) -> npt.NDArray[np.float32]:
        if self._similarity is None:
            self._similarity = self.index.similarity()
        return self._similarity

    def profile(self, key: ProfileKey) -> int:
        """The row of a profile, scored on first use."""
        row = self._profiles.get(key)
        if row is None:
            row = len(self._rows)
            self._rows.append(self._score(key))
            self._profiles[key] = row
        return row

    def _score(self, key: ProfileKey) -> _Profile:
        topic_ids, keywords, authors, exclude = key
        n, s = len(self.papers), self.settings
        known = [t for t in topic_ids if t in self.topics]  # a topic may leave the config
        parts = [self.topic_matrix[self.topic_ids.index(t)] for t in known]
        best = np.full(n, -1, dtype=np.int16)
        if parts:
            stacked = np.stack(parts)
            rel = stacked.max(axis=0)
            best = np.array([self.topic_ids.index(t) for t in known], dtype=np.int16)[
                stacked.argmax(axis=0)
            ]
        else:
            rel = np.zeros(n, dtype=np.float32)
        if keywords:
            # a subscriber's own keywords are phrases they chose: a paper that does not hold
            # them counts less, so "graph neural networks" does not pull in "neural" alone
            own = self.index.query(" ".join(keywords * 2)) * self.index.phrase_weight(keywords)
            best = np.where(own > rel, np.int16(-1), best).astype(np.int16)
            rel = np.maximum(rel, own)
        if authors:
            rel = rel + s.boosts.author * self.index.author_mask(authors)
        interested = bool(topic_ids or keywords or authors)
        eligible = rel >= s.threshold if interested else np.ones(n, dtype=bool)
        if exclude:
            eligible &= ~self.index.phrase_mask(exclude)
        final = (
            s.weight_relevance * rel
            + s.weight_trending * self.trending
            + s.weight_recency * self.recency
        )
        final = np.where(eligible, final, -np.inf).astype(np.float32)
        return _Profile(final, rel.astype(np.float32), best, len(known))

    def rank(
        self, subscribers: Sequence[Subscriber], history: Mapping[int, set[str]], max_papers: int
    ) -> RankResult:
        """Every subscriber's picks, in digest order, never a paper already sent to them."""
        keys = [profile_key(s) for s in subscribers]
        profile_of = np.array([self.profile(k) for k in keys], dtype=np.int32)
        if self._rows:
            scores = np.stack([p.final for p in self._rows])
            best = np.stack([p.best_topic for p in self._rows])
        else:
            scores = np.zeros((0, len(self.papers)), dtype=np.float32)
            best = np.zeros((0, len(self.papers)), dtype=np.int16)
        counts = np.array([p.topic_count for p in self._rows], dtype=np.int32)
        sent = sent_columns([s.id for s in subscribers], history, self.column)
        picks = select(
            scores,
            best,
            counts,
            profile_of,
            sent,
            self.similarity,
            max_papers,
            self.settings.diversity,
            self.settings.max_topic_share,
        )
        return RankResult(
            self,
            {s.id: (k, picks[i]) for i, (s, k) in enumerate(zip(subscribers, keys, strict=True))},
        )


class RankResult:
    """The picks; ``items`` turns one subscriber's into digest items with reasons."""

    def __init__(
        self, ranker: Ranker, picks: dict[int, tuple[ProfileKey, npt.NDArray[np.int32]]]
    ) -> None:
        self._ranker = ranker
        self._picks = picks

    def items(self, subscriber_id: int) -> list[DigestItem]:
        r = self._ranker
        key, cols = self._picks[subscriber_id]
        prof = r._rows[r.profile(key)]
        out = []
        for col in (int(c) for c in cols if c >= 0):
            t = int(prof.best_topic[col])
            topic = r.topics[r.topic_ids[t]] if t >= 0 else None
            paper = r.papers[col]
            parts = (
                ("relevance", float(prof.relevance[col])),
                ("trending", float(r.trending[col])),
                ("recency", float(r.recency[col])),
            )
            out.append(
                DigestItem(
                    paper,
                    round(float(prof.final[col]), 4),
                    topic.id if topic else None,
                    reasons(paper, topic, key, r.index.texts[col], r.velocity[col]),
                    tuple((name, round(v, 4)) for name, v in parts),
                )
            )
        return out
