"""Papers, the sources that carried them, and every signal reading with its time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, func, select

from newsletter.models import (
    Paper,
    Signals,
    StoredPaper,
)
from newsletter.sources.merge import merge_paper
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, chunks, dt, iso

REPLACEMENTS = frozenset({"replace", "replace-cross"})
Reading = tuple[int | None, int | None, int | None]
_DETAILS = ("doi", "comment", "journal_ref", "thumbnail_url", "organization")


@dataclass(slots=True)
class MergeCounts:
    """What one merge did: papers added, papers changed, replacements of unknown papers."""

    new: int = 0
    updated: int = 0
    skipped: int = 0


class PaperStore(StoreBase):
    def merge_papers(self, papers: Iterable[Paper], now: datetime) -> MergeCounts:
        """Merge parsed papers into the store in one transaction. Idempotent.

        A ``replace`` of a paper not stored is skipped: it is an old paper revised, not news.
        """
        batch = list(papers)
        counts = MergeCounts()
        stamp = now.isoformat()
        ids = list(dict.fromkeys(p.id for p in batch))
        with self.engine.begin() as conn:
            stored = self._rows(conn, ids)
            readings = self._last_readings(conn, ids)
            fresh: dict[str, dict[str, Any]] = {}
            changed: dict[str, dict[str, Any]] = {}
            signal_rows: list[dict[str, Any]] = []
            for paper in batch:
                old = fresh.get(paper.id) or changed.get(paper.id) or stored.get(paper.id)
                if old is None and paper.announce_type in REPLACEMENTS:
                    counts.skipped += 1
                    continue
                merged = merge_paper(old, paper)
                if paper.id in fresh or old is None:
                    fresh[paper.id] = merged
                elif merged != old:
                    changed[paper.id] = merged
                key = (paper.id, paper.source)
                reading = _complete(paper, readings.get(key))
                if not paper.signals.is_empty() and readings.get(key) != reading:
                    readings[key] = reading
                    signal_rows.append(
                        {
                            "paper_id": paper.id,
                            "source": paper.source,
                            "seen_at": stamp,
                            "upvotes": reading[0],
                            "stars": reading[1],
                            "comments": reading[2],
                        }
                    )
            if fresh:
                conn.execute(
                    t.papers.insert(),
                    [
                        {"id": pid, "first_seen_at": stamp, "updated_at": stamp, **_encode_paper(m)}
                        for pid, m in fresh.items()
                    ],
                )
            for pid, m in changed.items():
                conn.execute(
                    t.papers.update()
                    .where(t.papers.c.id == pid)
                    .values(updated_at=stamp, **_encode_paper(m))
                )
            kept = [p for p in batch if p.id in fresh or p.id in changed or p.id in stored]
            self._touch_sources(conn, kept, stamp)
            if signal_rows:
                conn.execute(t.signals.insert(), signal_rows)
        counts.new, counts.updated = len(fresh), len(changed)
        return counts

    def _rows(self, conn: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for chunk in chunks(ids):
            for row in conn.execute(select(t.papers).where(t.papers.c.id.in_(chunk))).mappings():
                out[row["id"]] = _decode_paper_row(row)
        return out

    def _last_readings(self, conn: Any, ids: Sequence[str]) -> dict[tuple[str, str], Reading]:
        """The latest signal reading per (paper, source)."""
        s = t.signals
        out: dict[tuple[str, str], Reading] = {}
        for chunk in chunks(ids):
            latest = (
                select(func.max(s.c.id).label("last_id"))
                .where(s.c.paper_id.in_(chunk))
                .group_by(s.c.paper_id, s.c.source)
                .subquery()
            )
            q = select(s.c.paper_id, s.c.source, s.c.upvotes, s.c.stars, s.c.comments).join(
                latest, s.c.id == latest.c.last_id
            )
            for pid, src, up, st, co in conn.execute(q):
                out[(pid, src)] = (up, st, co)
        return out

    def _touch_sources(self, conn: Any, papers: Sequence[Paper], stamp: str) -> None:
        if not papers:
            return
        ps = t.paper_sources
        rows = [
            {
                "paper_id": p.id,
                "source": p.source,
                "announce_type": p.announce_type,
                "first_seen_at": stamp,
                "last_seen_at": stamp,
            }
            for p in papers
        ]
        conn.execute(self._insert_ignore(ps), rows)
        conn.execute(
            ps.update()
            .where(ps.c.paper_id == bindparam("pid"), ps.c.source == bindparam("src"))
            .values(last_seen_at=stamp, announce_type=bindparam("announce")),
            [{"pid": p.id, "src": p.source, "announce": p.announce_type} for p in papers],
        )

    def papers_since(self, since: datetime) -> list[StoredPaper]:
        """Papers first seen at or after ``since``, with sources and latest signals."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(t.papers)
                    .where(t.papers.c.first_seen_at >= since.isoformat())
                    .order_by(t.papers.c.first_seen_at, t.papers.c.id)
                )
                .mappings()
                .all()
            )
            ids = [r["id"] for r in rows]
            sources = self._sources_of(conn, ids)
            sigs = self._latest_signals(conn, ids)
        return [
            _stored_paper(r, sources.get(r["id"], ()), sigs.get(r["id"], Signals())) for r in rows
        ]

    def papers_by_id(self, ids: Sequence[str]) -> list[StoredPaper]:
        """These papers, in the order given (unknown ids left out)."""
        with self.engine.connect() as conn:
            rows = {
                r["id"]: r
                for chunk in chunks(ids)
                for r in conn.execute(select(t.papers).where(t.papers.c.id.in_(chunk))).mappings()
            }
            found = [i for i in ids if i in rows]
            sources = self._sources_of(conn, found)
            sigs = self._latest_signals(conn, found)
        return [_stored_paper(rows[i], sources.get(i, ()), sigs.get(i, Signals())) for i in found]

    def embeddings(self, ids: Sequence[str], model: str) -> dict[str, npt.NDArray[np.float32]]:
        """Cached embeddings of these papers for one model."""
        e = t.paper_embeddings
        out = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                q = select(e.c.paper_id, e.c.vector).where(
                    e.c.model == model, e.c.paper_id.in_(chunk)
                )
                for pid, blob in conn.execute(q):
                    out[pid] = np.frombuffer(blob, dtype=np.float32)
        return out

    def save_embeddings(self, model: str, vectors: Mapping[str, npt.NDArray[np.float32]]) -> None:
        if not vectors:
            return
        with self.engine.begin() as conn:
            conn.execute(
                self._insert_ignore(t.paper_embeddings),
                [
                    {"paper_id": pid, "model": model, "vector": np.asarray(v, np.float32).tobytes()}
                    for pid, v in vectors.items()
                ],
            )

    def upvote_history(self, ids: Sequence[str]) -> dict[str, list[tuple[datetime, int]]]:
        """Every stored upvote reading of these papers, with when it was seen (for velocity)."""
        s = t.signals
        out: dict[str, list[tuple[datetime, int]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                q = select(s.c.paper_id, s.c.seen_at, s.c.upvotes).where(
                    s.c.paper_id.in_(chunk), s.c.upvotes.is_not(None)
                )
                for pid, seen, up in conn.execute(q):
                    out.setdefault(pid, []).append((datetime.fromisoformat(seen), int(up)))
        return out

    def _sources_of(self, conn: Any, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for chunk in chunks(ids):
            for pid, src in conn.execute(
                select(t.paper_sources.c.paper_id, t.paper_sources.c.source).where(
                    t.paper_sources.c.paper_id.in_(chunk)
                )
            ):
                out.setdefault(pid, []).append(src)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def _latest_signals(self, conn: Any, ids: Sequence[str]) -> dict[str, Signals]:
        """Per paper, the highest latest value of each signal across its sources."""
        s = t.signals
        latest = (
            select(s.c.paper_id, s.c.source, func.max(s.c.id).label("last_id"))
            .group_by(s.c.paper_id, s.c.source)
            .subquery()
        )
        out: dict[str, Signals] = {}
        for chunk in chunks(ids):
            q = (
                select(s.c.paper_id, s.c.upvotes, s.c.stars, s.c.comments)
                .join(latest, s.c.id == latest.c.last_id)
                .where(s.c.paper_id.in_(chunk))
            )
            for pid, up, st, co in conn.execute(q):
                prev = out.get(pid, Signals())
                out[pid] = Signals(
                    _max(prev.upvotes, up), _max(prev.stars, st), _max(prev.comments, co)
                )
        return out


def _complete(paper: Paper, last: Reading | None) -> Reading:
    """A reading with the fields this source left out carried over from its last one
    (older Hugging Face days lack some fields: absent means unknown, not zero)."""
    s = paper.signals
    new = (s.upvotes, s.stars, s.comments)
    if last is None:
        return new
    return (
        new[0] if new[0] is not None else last[0],
        new[1] if new[1] is not None else last[1],
        new[2] if new[2] is not None else last[2],
    )


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


_LIST_COLUMNS = ("authors", "categories", "keywords")


def _decode_paper_row(row: Any) -> dict[str, Any]:
    out = {
        k: row[k]
        for k in (
            "title",
            "abstract",
            "url",
            "pdf_url",
            "code_url",
            "project_url",
            "summary",
            "version",
            *_DETAILS,
        )
    }
    for k in _LIST_COLUMNS:
        out[k] = json.loads(row[k])
    out["published_at"] = dt(row["published_at"])
    return out


def _encode_paper(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for k in _LIST_COLUMNS:
        out[k] = json.dumps(values[k], ensure_ascii=False)
    out["published_at"] = iso(values["published_at"])
    return out


def _stored_paper(row: Any, sources: tuple[str, ...], sigs: Signals) -> StoredPaper:
    first_seen = dt(row["first_seen_at"])
    assert first_seen is not None
    return StoredPaper(
        id=row["id"],
        title=row["title"],
        abstract=row["abstract"],
        authors=tuple(json.loads(row["authors"])),
        categories=tuple(json.loads(row["categories"])),
        url=row["url"],
        pdf_url=row["pdf_url"],
        code_url=row["code_url"],
        project_url=row["project_url"],
        summary=row["summary"],
        keywords=tuple(json.loads(row["keywords"])),
        version=row["version"],
        published=dt(row["published_at"]),
        first_seen=first_seen,
        sources=sources,
        signals=sigs,
        **{k: row[k] for k in _DETAILS},
    )
