"""Short human reasons for a pick ("Speech: matches ASR; cs.SD; 120 upvotes; code")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.models import StoredPaper, Topic
from newsletter.rank.relevance import category_matches, normalise

if TYPE_CHECKING:
    from newsletter.rank import ProfileKey


def _literal(terms: tuple[str, ...] | list[str], text: str) -> list[str]:
    return [t for t in terms if normalise(t).strip() and normalise(t) in text]


def reasons(
    paper: StoredPaper, topic: Topic | None, key: ProfileKey, text: str, velocity: float
) -> tuple[str, ...]:
    topic_ids, keywords, authors, _ = key
    out: list[str] = []
    if topic is not None:
        hits = _literal(list(topic.keywords), text)
        out.append(
            f"{topic.name}: matches {', '.join(hits[:3])}" if hits else f"related to {topic.name}"
        )
        cats = category_matches(topic.categories, paper.categories)
        if cats:
            out.append(", ".join(cats[:2]))
    own = _literal(list(keywords), text)
    if own:
        out.append("your keywords: " + ", ".join(own[:3]))
    followed = [a for a in paper.authors if normalise(a) in {normalise(x) for x in authors}]
    if followed:
        out.append("by " + ", ".join(followed[:2]))
    s = paper.signals
    if s.upvotes:
        out.append(f"{s.upvotes} upvotes")
    if velocity >= 5:
        out.append(f"+{velocity:.0f} upvotes/day")
    if s.stars:
        out.append(f"{s.stars} GitHub stars")
    if paper.code_url:
        out.append("code")
    if not out or (not topic_ids and not keywords and not authors):
        out.insert(0, "trending")
    return tuple(out)
