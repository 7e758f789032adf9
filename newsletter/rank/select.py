"""Pick each subscriber's papers from the profile scores, vectorised over subscribers.

For a chunk of subscribers at a time: gather their profile's scores, drop what each was
already sent, keep the best few candidates, then choose greedily by maximal marginal
relevance (relevance minus similarity to what is already chosen), with at most a share of
the digest from one topic when the subscriber follows several. No Python loop runs over
subscribers times papers; the only loops are over chunks and over the digest's slots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

CHUNK = 4096

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]


def select(
    scores: FloatArray,  # profiles x papers, -inf where a paper is not eligible
    best_topic: npt.NDArray[np.int16],  # profiles x papers: the topic that made it relevant
    topic_count: IntArray,  # per profile: how many topics it follows
    profile_of: IntArray,  # per subscriber: its profile row
    sent: Sequence[Sequence[int]],  # per subscriber: paper columns already sent
    similarity: FloatArray,  # papers x papers
    k: int,
    diversity: float,
    max_topic_share: float,
) -> IntArray:
    """Subscribers x k paper columns in digest order, -1 where nothing more qualifies."""
    n_subs, n_papers = len(profile_of), scores.shape[1]
    out = np.full((n_subs, k), -1, dtype=np.int32)
    if n_subs == 0 or n_papers == 0 or k == 0:
        return out
    lam = 1.0 - diversity
    cap_many = max(1, math.ceil(max_topic_share * k))
    n_topics = int(best_topic.max(initial=-1)) + 2  # slot 0 for "no topic"
    width = min(n_papers, max(3 * k, k + 5))
    for start in range(0, n_subs, CHUNK):
        prof = profile_of[start : start + CHUNK]
        n = len(prof)
        sc = scores[prof]
        rows = np.repeat(np.arange(n), [len(sent[start + i]) for i in range(n)])
        if len(rows):
            cols = np.concatenate([np.asarray(sent[start + i], dtype=np.int64) for i in range(n)])
            sc[rows, cols] = -np.inf
        if width < n_papers:
            cand = np.argpartition(-sc, width - 1, axis=1)[:, :width]
        else:
            cand = np.tile(np.arange(n_papers), (n, 1))
        cs = np.take_along_axis(sc, cand, axis=1)
        order = np.argsort(-cs, axis=1, kind="stable")
        cand, cs = np.take_along_axis(cand, order, 1), np.take_along_axis(cs, order, 1)
        valid = np.isfinite(cs)
        top = np.where(valid[:, :1], cs[:, :1], 1.0)
        rel = np.where(valid, cs / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)
        ctopic = best_topic[prof[:, None], cand].astype(np.int64) + 1
        sims = similarity[cand[:, :, None], cand[:, None, :]]
        cap = np.where(topic_count[prof] >= 2, cap_many, k)
        taken: npt.NDArray[np.bool_] = np.logical_not(valid)
        maxsim = np.zeros_like(rel)
        counts = np.zeros((n, n_topics), dtype=np.int32)
        idx = np.arange(n)
        for step in range(k):
            mmr = np.where(taken, -np.inf, lam * rel - (1.0 - lam) * maxsim)
            over = counts[idx[:, None], ctopic] >= cap[:, None]
            capped = np.where(over & (ctopic > 0), -np.inf, mmr)
            # only capped topics left: fill the digest anyway
            stuck = np.logical_not(np.isfinite(capped).any(axis=1))
            choice = np.where(np.asarray(stuck)[:, None], mmr, capped)
            pick = np.argmax(choice, axis=1)
            ok = np.isfinite(choice[idx, pick])
            if not ok.any():
                break
            r, p = idx[ok], pick[ok]
            out[start + r, step] = cand[r, p]
            taken[r, p] = True
            maxsim[r] = np.maximum(maxsim[r], sims[r, p, :])
            counts[r, ctopic[r, p]] += 1
    return out


def sent_columns(
    subscriber_ids: Sequence[int], history: Mapping[int, set[str]], column: Mapping[str, int]
) -> list[list[int]]:
    """Per subscriber, the candidate columns of papers already sent to them."""
    return [[column[p] for p in history.get(sid, ()) if p in column] for sid in subscriber_ids]
