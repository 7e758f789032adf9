"""Pick each subscriber's papers from the profile scores, vectorised over subscribers.

For a chunk of subscribers at a time: gather their profile's scores, drop what each was
already sent, keep the best few candidates, then choose greedily by maximal marginal
relevance (relevance minus similarity to what is already chosen), with at most a share of
the digest from one topic when the subscriber follows several. No Python loop runs over
subscribers times papers; the only loops are over chunks and over the digest's slots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    extras: npt.NDArray[np.int64],  # profiles x E: each followed topic's best, -1 padded
    similarity: FloatArray,  # papers x papers
    k: int,
    diversity: float,
    max_topic_share: float,
    order: npt.NDArray[np.int64] | None = None,  # profiles x depth: ``leading(scores, ...)``
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
    # each profile's leading papers, best first, once; a row then only drops what it was sent
    most_sent = max((len(x) for x in sent), default=0)
    depth = width + most_sent
    lead = (
        order[:, :depth]
        if order is not None and order.shape[1] >= min(depth, n_papers)
        else leading(scores, depth)
    )
    for start in range(0, n_subs, CHUNK):
        prof = profile_of[start : start + CHUNK]
        n = len(prof)
        full = lead[prof]
        if most_sent:
            pad = np.full((n, most_sent), -2, dtype=np.int64)
            for i in range(n):
                got = sent[start + i]
                pad[i, : len(got)] = got
            drop = (full[:, :, None] == pad[:, None, :]).any(axis=2)
            keep = np.argsort(drop, axis=1, kind="stable")[:, :width]
            cand = np.take_along_axis(full, keep, axis=1)
            gone = np.take_along_axis(drop, keep, axis=1)
        else:
            cand, gone = full[:, :width], np.zeros((n, min(width, full.shape[1])), dtype=bool)
        if extras.shape[1]:  # so the topic cap can be met from below the window
            ex = extras[prof]
            dup = (ex < 0) | (ex[:, :, None] == cand[:, None, :]).any(axis=2)
            if most_sent:
                dup |= (ex[:, :, None] == pad[:, None, :]).any(axis=2)
            cand = np.concatenate([cand, np.where(ex < 0, 0, ex)], axis=1)
            gone = np.concatenate([gone, dup], axis=1)
        cs = np.where(gone, -np.inf, scores[prof[:, None], cand]).astype(np.float32)
        valid = np.isfinite(cs)
        top = np.where(valid, cs, -np.inf).max(axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 1.0)
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


def leading(scores: FloatArray, width: int) -> npt.NDArray[np.int64]:
    """Per row, the ``width`` best columns in descending score order, ties by column.

    Deterministic on purpose: which sent papers can change a pick is decided from this
    order, and the picks are made from a prefix of the same order.
    """
    n_papers = scores.shape[1]
    cols = np.broadcast_to(np.arange(n_papers), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)
    return order[:, : min(width, n_papers)].astype(np.int64)


def topic_extras(
    scores: FloatArray,
    best_topic: npt.NDArray[np.int16],
    follows: npt.NDArray[np.bool_],
    per_topic: int,
    order: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """For profiles following several topics, each topic's ``per_topic`` best eligible papers
    (in the one ``order``), so a digest's topic cap can be met even when one topic fills the
    top of the list. Vectorised per topic over the profiles that follow it."""
    n_rows = scores.shape[0]
    keep = np.zeros(order.shape, dtype=bool)
    several = follows.sum(axis=1) >= 2
    for t in range(follows.shape[1]):
        rows = np.flatnonzero(follows[:, t] & several)
        if not len(rows):
            continue
        o = order[rows]
        hits = (np.take_along_axis(best_topic[rows], o, axis=1) == t) & np.isfinite(
            np.take_along_axis(scores[rows], o, axis=1)
        )
        keep[rows] |= hits & (np.cumsum(hits, axis=1) <= per_topic)
    width = int(keep.sum(axis=1).max(initial=0))
    if width == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    first = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    picked = np.take_along_axis(order, first, axis=1)
    return np.where(np.take_along_axis(keep, first, axis=1), picked, -1).astype(np.int64)
