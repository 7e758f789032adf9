"""The store: every read and write of the database goes through ``Store``.

SQLAlchemy Core so the same code runs on SQLite (the default, WAL) and, later, PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from newsletter.errors import StoreError
from newsletter.models import (
    DeliveryStatus,
    Paper,
    Signals,
    StoredPaper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.sources.merge import merge_paper
from newsletter.store import schema as t
from newsletter.store.migrations import migrate


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url)


class Store:
    """One database; open with ``Store.open(url)``, which migrates it to the latest schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url.removeprefix("sqlite:///"))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the database folder {path.parent}: {exc.strerror}"
                ) from None
        store = cls(_make_engine(url))
        try:
            with store.engine.begin() as conn:
                migrate(conn)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {url}: {exc.__class__.__name__}: "
                f"{str(exc.orig if hasattr(exc, 'orig') else exc)[:200]}"
            ) from None
        return store

    @classmethod
    def memory(cls) -> Store:
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        store = cls(engine)
        with engine.begin() as conn:
            migrate(conn)
        return store

    def snapshot(self) -> Store:
        """An in-memory copy to run a dry run against: the real database is never written."""
        if self.engine.dialect.name != "sqlite":
            raise StoreError("a dry run needs a SQLite database for now")
        copy = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        with self.engine.connect() as src_conn, copy.connect() as dst_conn:
            src = src_conn.connection.dbapi_connection
            dst = dst_conn.connection.dbapi_connection
            assert isinstance(src, sqlite3.Connection) and isinstance(dst, sqlite3.Connection)
            src.backup(dst)
        return Store(copy)

    def close(self) -> None:
        self.engine.dispose()

    def _insert_ignore(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    # ---- papers -------------------------------------------------------------------------

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
        for chunk in _chunks(ids):
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
        for chunk in _chunks(ids):
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

    # ---- subscribers --------------------------------------------------------------------

    def upsert_subscriber(self, sub: Subscriber, now: datetime, *, keep_status: bool = True) -> str:
        """Add or update by email. Returns "added", "updated", "unchanged" or "suppressed".

        Suppression wins: an unsubscribed or bounced address is never brought back here.
        """
        stamp = now.isoformat()
        values = {
            "name": sub.name,
            "topics": json.dumps(list(sub.topics)),
            "keywords": json.dumps(list(sub.keywords)),
            "frequency": sub.frequency,
            "timezone": sub.timezone,
        }
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(t.subscribers).where(t.subscribers.c.email == sub.email))
                .mappings()
                .first()
            )
            if row is None:
                conn.execute(
                    t.subscribers.insert().values(
                        email=sub.email,
                        status=sub.status.value,
                        created_at=stamp,
                        updated_at=stamp,
                        confirmed_at=stamp if sub.status is SubscriberStatus.ACTIVE else None,
                        **values,
                    )
                )
                return "added"
            if row["status"] in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
                return "suppressed"
            if not keep_status and row["status"] != sub.status.value:
                values["status"] = sub.status.value
            if all(row[k] == v for k, v in values.items()):
                return "unchanged"
            conn.execute(
                t.subscribers.update()
                .where(t.subscribers.c.id == row["id"])
                .values(updated_at=stamp, **values)
            )
            return "updated"

    def set_subscriber_status(self, email: str, status: SubscriberStatus, now: datetime) -> bool:
        values: dict[str, Any] = {"status": status.value, "updated_at": now.isoformat()}
        if status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
            values["unsubscribed_at"] = now.isoformat()
        with self.engine.begin() as conn:
            res = conn.execute(
                t.subscribers.update().where(t.subscribers.c.email == email).values(**values)
            )
        return bool(res.rowcount)

    def unsubscribe_id(self, subscriber_id: int, now: datetime) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.subscribers.update()
                .where(t.subscribers.c.id == subscriber_id)
                .values(
                    status=SubscriberStatus.UNSUBSCRIBED.value,
                    unsubscribed_at=now.isoformat(),
                    updated_at=now.isoformat(),
                )
            )
        return bool(res.rowcount)

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        q = select(t.subscribers).order_by(t.subscribers.c.id)
        if status is not None:
            q = q.where(t.subscribers.c.status == status.value)
        with self.engine.connect() as conn:
            return [_subscriber(r) for r in conn.execute(q).mappings()]

    def subscriber(self, *, email: str | None = None, id: int | None = None) -> Subscriber | None:
        col, value = (
            (t.subscribers.c.email, email) if email is not None else (t.subscribers.c.id, id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(select(t.subscribers).where(col == value)).mappings().first()
        return _subscriber(row) if row else None

    # ---- editions and the deliveries ledger ---------------------------------------------

    def edition(self, edition_date: date, now: datetime) -> int:
        """The edition's id, created on first use."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert_ignore(t.editions).values(
                    edition_date=edition_date.isoformat(), created_at=now.isoformat()
                )
            )
            return int(
                conn.execute(
                    select(t.editions.c.id).where(
                        t.editions.c.edition_date == edition_date.isoformat()
                    )
                ).scalar_one()
            )

    def plan_deliveries(
        self, edition_id: int, subscriber_ids: Iterable[int], now: datetime
    ) -> None:
        """A pending row per subscriber not yet in the ledger for this edition."""
        stamp = now.isoformat()
        rows = [
            {
                "edition_id": edition_id,
                "subscriber_id": sid,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "paper_ids": "[]",
                "created_at": stamp,
                "updated_at": stamp,
            }
            for sid in subscriber_ids
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(t.deliveries), rows)

    def recover_interrupted(self, edition_id: int, now: datetime) -> int:
        """Rows left ``sending`` by a killed run may have been accepted: mark them uncertain."""
        d = t.deliveries
        with self.engine.begin() as conn:
            res = conn.execute(
                update(d)
                .where(d.c.edition_id == edition_id, d.c.status == DeliveryStatus.SENDING.value)
                .values(status=DeliveryStatus.UNCERTAIN.value, updated_at=now.isoformat())
            )
        return int(res.rowcount)

    def deliveries(self, edition_id: int) -> list[dict[str, Any]]:
        d = t.deliveries
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    select(d).where(d.c.edition_id == edition_id).order_by(d.c.id)
                ).mappings()
            ]

    def claim(
        self, delivery_id: int, message_id: str, paper_ids: Sequence[str], now: datetime
    ) -> bool:
        """Atomically move a row to ``sending`` before the SMTP transaction; False if taken."""
        d = t.deliveries
        claimable = (
            DeliveryStatus.PENDING.value,
            DeliveryStatus.UNCERTAIN.value,
            DeliveryStatus.FAILED.value,
        )
        with self.engine.begin() as conn:
            res = conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status.in_(claimable))
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=d.c.attempts + 1,
                    message_id=func.coalesce(d.c.message_id, message_id),
                    paper_ids=json.dumps(list(paper_ids)),
                    updated_at=now.isoformat(),
                )
            )
        return res.rowcount == 1

    def mark_sent(self, delivery_id: int, reply: str, now: datetime) -> None:
        """Sent, and its papers recorded as sent to the subscriber, in one transaction."""
        d = t.deliveries
        stamp = now.isoformat()
        with self.engine.begin() as conn:
            row = conn.execute(
                select(d.c.subscriber_id, d.c.edition_id, d.c.paper_ids).where(
                    d.c.id == delivery_id
                )
            ).one()
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id)
                .values(
                    status=DeliveryStatus.SENT.value,
                    last_reply=reply,
                    sent_at=stamp,
                    updated_at=stamp,
                )
            )
            ids = json.loads(row.paper_ids)
            if ids:
                conn.execute(
                    self._insert_ignore(t.sent_papers),
                    [
                        {
                            "subscriber_id": row.subscriber_id,
                            "paper_id": pid,
                            "edition_id": row.edition_id,
                            "sent_at": stamp,
                        }
                        for pid in ids
                    ],
                )

    def mark(self, delivery_id: int, status: DeliveryStatus, reply: str, now: datetime) -> None:
        """Move a row to a final or retryable state with the server's reply."""
        d = t.deliveries
        with self.engine.begin() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id)
                .values(status=status.value, last_reply=reply[:1000], updated_at=now.isoformat())
            )

    def release(self, delivery_id: int, now: datetime) -> None:
        """Back to pending: the transaction never started (server unreachable)."""
        d = t.deliveries
        with self.engine.begin() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id)
                .values(
                    status=DeliveryStatus.PENDING.value,
                    attempts=d.c.attempts - 1,
                    updated_at=now.isoformat(),
                )
            )

    def sent_paper_ids(
        self, subscriber_ids: Sequence[int], paper_ids: Sequence[str]
    ) -> dict[int, set[str]]:
        """For each subscriber, which of ``paper_ids`` they were already sent."""
        sp = t.sent_papers
        out: dict[int, set[str]] = {}
        if not paper_ids:
            return out
        with self.engine.connect() as conn:
            for chunk in _chunks(paper_ids):
                for sid, pid in conn.execute(
                    select(sp.c.subscriber_id, sp.c.paper_id).where(sp.c.paper_id.in_(chunk))
                ):
                    out.setdefault(sid, set()).add(pid)
        wanted = set(subscriber_ids)
        return {k: v for k, v in out.items() if k in wanted}

    def counts(self) -> dict[str, int]:
        """Row counts, for status output and tests."""
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in (
                    ("papers", t.papers),
                    ("subscribers", t.subscribers),
                    ("deliveries", t.deliveries),
                    ("sent_papers", t.sent_papers),
                    ("signals", t.signals),
                )
            }


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
    out["published_at"] = _dt(row["published_at"])
    return out


def _encode_paper(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for k in _LIST_COLUMNS:
        out[k] = json.dumps(values[k], ensure_ascii=False)
    out["published_at"] = _iso(values["published_at"])
    return out


def _stored_paper(row: Any, sources: tuple[str, ...], sigs: Signals) -> StoredPaper:
    first_seen = _dt(row["first_seen_at"])
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
        published=_dt(row["published_at"]),
        first_seen=first_seen,
        sources=sources,
        signals=sigs,
    )


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        status=SubscriberStatus(row["status"]),
        topics=tuple(json.loads(row["topics"])),
        keywords=tuple(json.loads(row["keywords"])),
        frequency=row["frequency"],
        timezone=row["timezone"],
    )
