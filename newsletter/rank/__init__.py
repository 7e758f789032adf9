"""Ranking: each subscriber's digest, from relevance, trending and recency, with reasons.

``Ranker`` does everything that does not depend on the subscriber once per edition (the
TF-IDF index, each topic's relevance, trending, recency, paper similarity). Subscribers with
the same interests share a *profile*, scored once; choosing each subscriber's papers (minus
what they were sent before) is vectorised in ``select``. Relevance decides whether a paper
belongs at all (the threshold); relevance, trending and recency, weighted, order the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from newsletter.models import DigestItem, StoredPaper, Subscriber, Topic
from newsletter.rank.reasons import reasons
from newsletter.rank.relevance import Boosts, PaperIndex, topic_relevance
from newsletter.rank.select import leading, select, topic_extras
from newsletter.rank.semantic import Encoder
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
    semantic_weight: float = 0.5  # how much embedding similarity adds, when a model is loaded
    semantic_floor: float = 0.2  # cosine below this is noise and adds nothing


def profile_key(sub: Subscriber) -> ProfileKey:
    """What a subscriber's digest depends on besides their history."""
    return (
        tuple(sorted(set(sub.topics))),
        tuple(sorted({k.strip().lower() for k in sub.keywords if k.strip()})),
        tuple(sorted({a.strip() for a in sub.authors if a.strip()})),
        tuple(sorted({x.strip().lower() for x in sub.exclude if x.strip()})),
    )


class Ranker:
    """Everything per edition; ``rank`` picks for many subscribers at once."""

    def __init__(
        self,
        papers: Sequence[StoredPaper],
        topics: Mapping[str, Topic],
        settings: RankSettings,
        now: datetime,
        signal_history: Mapping[str, Sequence[Reading]] | None = None,
        encoder: Encoder | None = None,
        embeddings: npt.NDArray[np.float32] | None = None,
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
        self.encoder = encoder if embeddings is not None and len(embeddings) else None
        self.embeddings = embeddings
        if self.encoder is not None and self.topic_ids:
            self.topic_matrix = self.topic_matrix + self._semantic_topics()
        self.trending, self.velocity = trending(
            self.papers, signal_history or {}, now, settings.trend
        )
        self.recency = recency(self.papers, now, settings.trend.half_life_days)
        self._profiles: dict[ProfileKey, int] = {}
        self._keys: dict[tuple[tuple[str, ...], ...], ProfileKey] = {}
        self._own: dict[tuple[str, ...], npt.NDArray[np.float32]] = {}
        self._row_keys: list[ProfileKey] = []
        n = len(self.papers)
        self._final = np.zeros((0, n), dtype=np.float32)  # profiles x papers, -inf: not eligible
        self._rel = np.zeros((0, n), dtype=np.float32)
        self._best = np.zeros((0, n), dtype=np.int16)  # the topic that made it relevant
        self._topic_count = np.zeros(0, dtype=np.int32)
        self._follows = np.zeros((0, len(self.topic_ids)), dtype=bool)
        self.groups = 0

    @property
    def similarity(self) -> npt.NDArray[np.float32]:
        return self.index.similarity

    @property
    def model(self) -> str:
        """Which relevance model is in use, for ``rank --explain`` and ``doctor``."""
        lexical = "TF-IDF (scikit-learn) with feedback"
        return f"{lexical} + {self.encoder.name} embeddings" if self.encoder else lexical

    def _semantic(self, sims: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        s = self.settings
        out: npt.NDArray[np.float32] = (
            s.semantic_weight * np.maximum(0.0, sims - s.semantic_floor)
        ).astype(np.float32)
        return out

    def _semantic_topics(self) -> npt.NDArray[np.float32]:
        """Per topic: half its name and description, half its best-matching keyword."""
        assert self.encoder is not None and self.embeddings is not None
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for tid in self.topic_ids:
            t = self.topics[tid]
            spans.append((len(texts), 1 + len(t.keywords)))
            texts += [f"{t.name}. {t.description}".strip(), *t.keywords]
        vecs = self.encoder.encode(texts) @ self.embeddings.T  # texts x papers
        rows = []
        for start, count in spans:
            desc = vecs[start]
            rows.append(
                0.5 * desc + 0.5 * vecs[start + 1 : start + count].max(axis=0)
                if count > 1
                else desc
            )
        return self._semantic(np.stack(rows))

    @property
    def profile_count(self) -> int:
        return len(self._row_keys)

    def profiles(self, keys: Sequence[ProfileKey]) -> npt.NDArray[np.int32]:
        """The profile row of each key; new profiles are scored together first."""
        new = [k for k in dict.fromkeys(keys) if k not in self._profiles]
        if new:
            self._add(new)
        return np.fromiter((self._profiles[k] for k in keys), np.int32, len(keys))

    def _add(self, keys: Sequence[ProfileKey]) -> None:
        """Score new profiles: the best topic per paper for all of them at once (a loop over
        topics, not profiles), then each one's own keywords, authors and exclusions."""
        n, s, tix = len(self.papers), self.settings, {t: i for i, t in enumerate(self.topic_ids)}
        u = len(keys)
        follows = np.zeros((u, len(self.topic_ids)), dtype=bool)
        for row, key in enumerate(keys):
            for tid in key[0]:
                if tid in tix:  # a topic may leave the config
                    follows[row, tix[tid]] = True
        rel = np.full((u, n), -np.inf, dtype=np.float32)
        best = np.full((u, n), -1, dtype=np.int16)
        for t in range(len(self.topic_ids)):
            rows = np.flatnonzero(follows[:, t])
            if len(rows):
                sub = rel[rows]
                better = self.topic_matrix[t][None, :] > sub
                rel[rows] = np.where(better, self.topic_matrix[t][None, :], sub)
                best[rows] = np.where(better, np.int16(t), best[rows])
        self._prefetch_own({k[1] for k in keys if k[1]})
        rel[~follows.any(axis=1)] = 0.0
        eligible = np.ones((u, n), dtype=bool)
        for row, (topic_ids, keywords, authors, exclude) in enumerate(keys):
            if keywords:
                own = self._own_relevance(keywords)
                best[row] = np.where(own > rel[row], np.int16(-1), best[row])
                rel[row] = np.maximum(rel[row], own)
            if authors:
                rel[row] += s.boosts.author * self.index.author_mask(authors)
            if topic_ids or keywords or authors:  # no interests at all: the trending list
                eligible[row] = rel[row] >= s.threshold
            if exclude:
                eligible[row] &= ~self.index.phrase_mask(exclude)
        base = s.weight_trending * self.trending + s.weight_recency * self.recency
        final = np.where(eligible, s.weight_relevance * rel + base[None, :], -np.inf)
        first = len(self._row_keys)
        for i, key in enumerate(keys):
            self._profiles[key] = first + i
        self._row_keys.extend(keys)
        self._final = np.concatenate([self._final, final.astype(np.float32)])
        self._rel = np.concatenate([self._rel, rel])
        self._best = np.concatenate([self._best, best])
        self._follows = np.concatenate([self._follows, follows])
        self._topic_count = np.concatenate(
            [self._topic_count, follows.sum(axis=1).astype(np.int32)]
        )

    def _prefetch_own(self, keyword_sets: set[tuple[str, ...]]) -> None:
        """Score every new set of own keywords in one pass of the vectoriser."""
        todo = sorted(k for k in keyword_sets if k not in self._own)
        if todo:
            scores = self.index.queries([" ".join(k * 2) for k in todo])
            for k, row in zip(todo, scores, strict=True):
                self._own[k] = row * self.index.phrase_weight(k)
                if self.encoder is not None and self.embeddings is not None:
                    sims = (self.encoder.encode(list(k)) @ self.embeddings.T).max(axis=0)
                    self._own[k] = self._own[k] + self._semantic(sims)

    def _own_relevance(self, keywords: tuple[str, ...]) -> npt.NDArray[np.float32]:
        """A subscriber's own keywords are phrases they chose: a paper that does not hold
        them counts less, so "graph neural networks" does not pull in "neural" alone."""
        own = self._own.get(keywords)
        if own is None:
            own = self._own[keywords] = self.index.query(
                " ".join(keywords * 2)
            ) * self.index.phrase_weight(keywords)
        return own

    def rank(
        self, subscribers: Sequence[Subscriber], history: Mapping[int, set[str]], max_papers: int
    ) -> RankResult:
        """Every subscriber's picks, in digest order, never a paper already sent to them.

        Subscribers whose profile is the same and who were sent the same papers among the
        profile's leading candidates get the same digest, so it is chosen once for them all.
        """
        n_subs, n_papers = len(subscribers), len(self.papers)
        profile_of = self.profiles([self._key(s) for s in subscribers])
        # (subscriber, column) of every paper already sent that is still a candidate
        sub_idx, cols = [], []
        column = self.column
        for i, s in enumerate(subscribers):
            for p in history.get(s.id, ()):
                c = column.get(p)
                if c is not None:
                    sub_idx.append(i)
                    cols.append(c)
        si, ci = np.array(sub_idx, dtype=np.int64), np.array(cols, dtype=np.int64)
        # a sent paper changes a pick only if it ranks within the first `width + m` of the
        # profile, m being how many of the candidates that subscriber was sent
        per_sub = np.bincount(si, minlength=n_subs) if len(si) else np.zeros(n_subs, np.int64)
        width = min(n_papers, max(3 * max_papers, max_papers + 5))
        depth = min(n_papers, width + int(per_sub.max(initial=0)))
        order = leading(self._final, n_papers)  # one total order per profile, ties by column
        position = np.empty((self.profile_count, n_papers), dtype=np.int32)
        np.put_along_axis(position, order, np.arange(n_papers, dtype=np.int32)[None, :], axis=1)
        cap = max(1, math.ceil(self.settings.max_topic_share * max_papers))
        extras = topic_extras(self._final, self._best, self._follows, cap, order)
        in_extras = np.zeros((self.profile_count, n_papers), dtype=bool)
        er, ec = np.nonzero(extras >= 0)
        in_extras[er, extras[er, ec]] = True
        relevant = (
            (position[profile_of[si], ci] < width + per_sub[si]) | in_extras[profile_of[si], ci]
            if len(si)
            else np.zeros(0, dtype=bool)
        )
        si, ci = si[relevant], ci[relevant]
        overlap: dict[int, list[int]] = {}
        for a, b in zip(si.tolist(), ci.tolist(), strict=True):
            overlap.setdefault(a, []).append(b)
        groups: dict[tuple[int, tuple[int, ...]], int] = {}
        group_of = np.empty(n_subs, dtype=np.int32)
        plain = np.ones(n_subs, dtype=bool)
        for i, sent in overlap.items():
            plain[i] = False
            group_of[i] = groups.setdefault((int(profile_of[i]), tuple(sorted(sent))), len(groups))
        # everyone without an overlap shares their profile's group
        for row in np.unique(profile_of[plain]).tolist():
            groups.setdefault((row, ()), len(groups))
        lookup = np.full(self.profile_count, -1, dtype=np.int32)
        for (row, sent_key), g in groups.items():
            if not sent_key:
                lookup[row] = g
        group_of[plain] = lookup[profile_of[plain]]
        rows = np.array([g[0] for g in groups], dtype=np.int32)
        sent_cols = [list(g[1]) for g in groups]
        picks = select(
            self._final,
            self._best,
            self._topic_count,
            rows,
            sent_cols,
            extras,
            self.similarity,
            max_papers,
            self.settings.diversity,
            self.settings.max_topic_share,
            order[:, :depth],
        )
        self.groups = len(groups)
        index = {s.id: i for i, s in enumerate(subscribers)}
        return RankResult(
            self,
            index,
            profile_of,
            picks[group_of] if len(groups) else np.full((n_subs, max_papers), -1, dtype=np.int32),
        )

    def _key(self, sub: Subscriber) -> ProfileKey:
        raw = (sub.topics, sub.keywords, sub.authors, sub.exclude)
        key = self._keys.get(raw)
        if key is None:
            key = self._keys[raw] = profile_key(sub)
        return key


class RankResult:
    """The picks; ``items`` turns one subscriber's into digest items with reasons."""

    def __init__(
        self,
        ranker: Ranker,
        index: dict[int, int],
        profile_of: npt.NDArray[np.int32],
        picks: npt.NDArray[np.int32],
    ) -> None:
        self._ranker = ranker
        self._index = index
        self._profile_of = profile_of
        self._picks = picks
        # subscribers who share a profile and picks share their items (and reasons)
        self._items: dict[tuple[int, bytes], list[DigestItem]] = {}

    def items(self, subscriber_id: int) -> list[DigestItem]:
        i = self._index[subscriber_id]
        row = int(self._profile_of[i])
        memo = (row, self._picks[i].tobytes())
        cached = self._items.get(memo)
        if cached is None:
            cached = self._items[memo] = self._make_items(row, self._picks[i])
        return list(cached)

    def _make_items(self, row: int, cols: npt.NDArray[np.int32]) -> list[DigestItem]:
        r = self._ranker
        key = r._row_keys[row]
        out = []
        for col in (int(c) for c in cols if c >= 0):
            t = int(r._best[row, col])
            topic = r.topics[r.topic_ids[t]] if t >= 0 else None
            paper = r.papers[col]
            parts = (
                ("relevance", float(r._rel[row, col])),
                ("trending", float(r.trending[col])),
                ("recency", float(r.recency[col])),
            )
            out.append(
                DigestItem(
                    paper,
                    round(float(r._final[row, col]), 4),
                    topic.id if topic else None,
                    reasons(paper, topic, key, r.index.texts[col], r.velocity[col]),
                    tuple((name, round(v, 4)) for name, v in parts),
                )
            )
        return out
