"""Papers, the sources that carried them, and every signal reading with its time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from newsletter.models import (
    Paper,
    Signals,
    StoredPaper,
)
from newsletter.sources.merge import merge_paper
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, chunks, dt, iso


class PaperStore(StoreBase):
    def merge_papers(self, papers: Iterable[Paper], now: datetime) -> tuple[int, int]:
        """Merge parsed papers into the store; returns (new, updated). Idempotent."""
        new = updated = 0
        stamp = now.isoformat()
        with self.engine.begin() as conn:
            for paper in papers:
                row = (
                    conn.execute(select(t.papers).where(t.papers.c.id == paper.id))
                    .mappings()
                    .first()
                )
                existing = _decode_paper_row(row) if row else None
                merged = merge_paper(existing, paper)
                values = _encode_paper(merged)
                if existing is None:
                    conn.execute(
                        t.papers.insert().values(
                            id=paper.id, first_seen_at=stamp, updated_at=stamp, **values
                        )
                    )
                    new += 1
                elif merged != existing:
                    conn.execute(
                        t.papers.update()
                        .where(t.papers.c.id == paper.id)
                        .values(updated_at=stamp, **values)
                    )
                    updated += 1
                self._touch_source(conn, paper, stamp)
                self._record_signals(conn, paper, stamp)
        return new, updated

    def _touch_source(self, conn: Any, paper: Paper, stamp: str) -> None:
        ps = t.paper_sources
        conn.execute(
            self._insert_ignore(ps).values(
                paper_id=paper.id,
                source=paper.source,
                announce_type=paper.announce_type,
                first_seen_at=stamp,
                last_seen_at=stamp,
            )
        )
        conn.execute(
            ps.update()
            .where(ps.c.paper_id == paper.id, ps.c.source == paper.source)
            .values(last_seen_at=stamp)
        )

    def _record_signals(self, conn: Any, paper: Paper, stamp: str) -> None:
        """Store a reading only when it differs from the source's latest one."""
        if paper.signals.is_empty():
            return
        s = t.signals
        last = conn.execute(
            select(s.c.upvotes, s.c.stars, s.c.comments)
            .where(s.c.paper_id == paper.id, s.c.source == paper.source)
            .order_by(s.c.seen_at.desc(), s.c.id.desc())
            .limit(1)
        ).first()
        reading = (paper.signals.upvotes, paper.signals.stars, paper.signals.comments)
        if last is None or tuple(last) != reading:
            conn.execute(
                s.insert().values(
                    paper_id=paper.id,
                    source=paper.source,
                    seen_at=stamp,
                    upvotes=reading[0],
                    stars=reading[1],
                    comments=reading[2],
                )
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
    )
