"""Trending and recency: how talked-about and how fresh each candidate is, in [0, 1].

Trending is log-scaled Hugging Face upvotes and comments, GitHub stars and upvote velocity
(upvotes gained per day, from the stored signal history), normalised by the edition's
maximum. Recency decays exponentially with the paper's age.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from newsletter.models import StoredPaper

Reading = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class TrendWeights:
    upvotes: float = 1.0
    comments: float = 0.3
    stars: float = 0.5
    velocity: float = 1.0
    half_life_days: float = 3.0


def velocity(readings: Sequence[Reading], published: datetime | None, now: datetime) -> float:
    """Upvotes gained per day: between the first and last reading of the last three days,
    or, from a single reading, since publication (at least one day)."""
    recent = sorted(r for r in readings if (now - r[0]).total_seconds() <= 3 * 86400)
    if len(recent) >= 2:
        (t0, v0), (t1, v1) = recent[0], recent[-1]
        days = (t1 - t0).total_seconds() / 86400
        if days >= 1 / 24:
            return max(0.0, (v1 - v0) / days)
    if readings:
        latest = max(readings)
        if published is not None:
            age = max(1.0, (now - published).total_seconds() / 86400)
            return max(0.0, latest[1] / age)
    return 0.0


def trending(
    papers: Sequence[StoredPaper],
    history: Mapping[str, Sequence[Reading]],
    now: datetime,
    w: TrendWeights,
) -> tuple[npt.NDArray[np.float32], list[float]]:
    """Normalised trending score per paper, and each paper's velocity (for reasons)."""
    raw, speeds = [], []
    for p in papers:
        s = p.signals
        speed = velocity(history.get(p.id, ()), p.published or p.first_seen, now)
        speeds.append(speed)
        raw.append(
            w.upvotes * math.log1p(s.upvotes or 0)
            + w.comments * math.log1p(s.comments or 0)
            + w.stars * math.log1p(s.stars or 0)
            + w.velocity * math.log1p(speed)
        )
    arr = np.array(raw, dtype=np.float32)
    top = float(arr.max()) if len(arr) else 0.0
    return (arr / top if top > 0 else arr), speeds


def recency(
    papers: Sequence[StoredPaper], now: datetime, half_life_days: float
) -> npt.NDArray[np.float32]:
    """1 for a paper out today, 0.5 after one half-life, and so on."""
    ages = np.array(
        [max(0.0, (now - (p.published or p.first_seen)).total_seconds() / 86400) for p in papers],
        dtype=np.float32,
    )
    decayed: npt.NDArray[np.float32] = np.exp2(-ages / max(half_life_days, 1e-3)).astype(np.float32)
    return decayed
