"""What the scheduler asks the ledger: each subscriber's latest edition, the editions with
work left, superseding rows a newer edition replaces, and the figures ``status`` shows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.schedule import When
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, chunks
from newsletter.store.ledger import OPEN_ROW


class ScheduleStore(StoreBase):
    def schedule_pages(
        self, size: int = 5000
    ) -> Iterator[list[tuple[int, When, date | None, str]]]:
        """Active, unpaused subscribers a page at a time, with only what scheduling reads:
        (id, (zone, frequency, hour, weekday), last edition, when they joined)."""
        s = t.subscribers
        cols = (
            s.c.id,
            s.c.timezone,
            s.c.frequency,
            s.c.send_hour,
            s.c.send_weekday,
            s.c.last_edition,
            func.coalesce(s.c.confirmed_at, s.c.created_at),
        )
        after = 0
        while True:
            q = (
                select(*cols)
                .where(
                    s.c.status == SubscriberStatus.ACTIVE.value,
                    s.c.paused_at.is_(None),
                    s.c.id > after,
                )
                .order_by(s.c.id)
                .limit(size)
            )
            with self.engine.connect() as conn:
                page = [
                    (
                        int(i),
                        (zone, freq, hour, weekday),
                        date.fromisoformat(last) if last else None,
                        str(joined),
                    )
                    for i, zone, freq, hour, weekday, last, joined in conn.execute(q)
                ]
            if not page:
                return
            yield page
            after = page[-1][0]

    def supersede_open(self, subscriber_ids: Sequence[int], before: date, now: datetime) -> int:
        """Rows still pending in editions older than ``before`` for these subscribers are
        skipped: after downtime a subscriber gets the newest edition once, not a backlog.
        Uncertain rows are kept: the server may have the message, and it is resent once
        with its Message-ID (a duplicate the receiver can recognise) rather than dropped."""
        d, e = t.deliveries, t.editions
        older = select(e.c.id).where(e.c.edition_date < before.isoformat()).scalar_subquery()
        done = 0
        with self.engine.begin() as conn:
            for chunk in chunks(subscriber_ids):
                res = conn.execute(
                    update(d)
                    .where(
                        d.c.subscriber_id.in_(chunk),
                        d.c.status == DeliveryStatus.PENDING.value,
                        d.c.edition_id.in_(older),
                    )
                    .values(
                        status=DeliveryStatus.SKIPPED.value,
                        last_reply="superseded by a newer edition",
                        updated_at=now.isoformat(),
                    )
                )
                done += res.rowcount
        return done

    def open_editions(self) -> list[tuple[int, date]]:
        """Editions with rows still to send (or left mid-send by a killed run), oldest first."""
        d, e = t.deliveries, t.editions
        q = (
            select(e.c.id, e.c.edition_date)
            .where(
                select(d.c.id)
                .where(
                    d.c.edition_id == e.c.id,
                    or_(OPEN_ROW, d.c.status == DeliveryStatus.SENDING.value),
                )
                .exists()
            )
            .order_by(e.c.edition_date)
        )
        with self.engine.connect() as conn:
            return [(int(i), date.fromisoformat(day)) for i, day in conn.execute(q)]

    def delivery_totals(self) -> dict[str, int]:
        """Deliveries by state across every edition (``status``)."""
        d = t.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.c.status, func.count()).group_by(d.c.status))
            return {str(s): int(n) for s, n in rows}

    def recent_editions(self, limit: int = 3) -> list[dict[str, Any]]:
        """The newest editions with their counts by state (``status``)."""
        d, e = t.deliveries, t.editions
        with self.engine.connect() as conn:
            eds = conn.execute(
                select(e.c.id, e.c.edition_date).order_by(e.c.edition_date.desc()).limit(limit)
            ).all()
            out = []
            for eid, day in eds:
                counts = conn.execute(
                    select(d.c.status, func.count())
                    .where(d.c.edition_id == eid)
                    .group_by(d.c.status)
                )
                last = conn.execute(
                    select(func.max(d.c.sent_at)).where(d.c.edition_id == eid)
                ).scalar()
                out.append(
                    {"date": day, "counts": {str(s): int(n) for s, n in counts}, "last_sent": last}
                )
            return out

    def subscriber_counts(self) -> dict[str, int]:
        """Subscribers by state, paused ones apart (``status``)."""
        s = t.subscribers
        with self.engine.connect() as conn:
            counts = {
                str(k): int(n)
                for k, n in conn.execute(select(s.c.status, func.count()).group_by(s.c.status))
            }
            paused = conn.execute(
                select(func.count()).where(
                    s.c.status == SubscriberStatus.ACTIVE.value, s.c.paused_at.is_not(None)
                )
            ).scalar_one()
            forgotten = conn.execute(select(func.count()).select_from(t.suppressions)).scalar_one()
        counts["paused"] = int(paused)
        counts["forgotten"] = int(forgotten)
        return counts

    def retries_waiting(self) -> int:
        """Rows a 4xx or a dropped connection left pending, to be tried again."""
        d = t.deliveries
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        d.c.status == DeliveryStatus.PENDING.value, d.c.attempts > 0
                    )
                ).scalar_one()
            )

    def items_seen(self, source: str, since: str) -> int:
        """Papers a source listed at or after ``since`` (its last collect: what it found)."""
        ps = t.paper_sources
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(ps.c.source == source, ps.c.last_seen_at >= since)
                ).scalar_one()
            )

    def reserve_open(
        self,
        edition_id: int,
        now: datetime,
        lease_until: datetime,
        limit: int,
        run_started: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """A worker's next batch: open rows no other worker holds, leased to this one until
        ``lease_until``. PostgreSQL skips rows another transaction has locked (FOR UPDATE
        SKIP LOCKED); SQLite runs one writer at a time, so the same statement is atomic
        there. The claim before each message still decides who sends it."""
        d = t.deliveries
        stamp = now.isoformat()
        free = (
            select(d.c.id)
            .where(
                d.c.edition_id == edition_id,
                OPEN_ROW,
                or_(d.c.lease_until.is_(None), d.c.lease_until < stamp),
                or_(
                    d.c.attempts == 0,
                    d.c.status != DeliveryStatus.PENDING.value,
                    d.c.updated_at < (run_started or now).isoformat(),
                ),
            )
            .order_by(d.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # one statement: on SQLite a SELECT then an UPDATE would let two workers read the
        # same free rows before either writes; an UPDATE holds the write lock throughout
        reserve = (
            update(d)
            .where(d.c.id.in_(free.scalar_subquery()))
            .values(lease_until=lease_until.isoformat())
            .returning(*d.c)
        )
        with self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(reserve).mappings()]
        return sorted(rows, key=lambda r: int(r["id"]))

    def release_reserved(self, ids: Sequence[int]) -> None:
        """Give back reserved rows a worker did not send (left the list, stopped, lost the
        claim), so the others need not wait for the lease to end."""
        d = t.deliveries
        with self.engine.begin() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(update(d).where(d.c.id.in_(chunk), OPEN_ROW).values(lease_until=None))

    def held_until(self, edition_id: int, now: datetime) -> datetime | None:
        """When the earliest lease on rows another worker holds (reserved and not tried yet,
        or mid-send) runs out; None when no such row is left. A worker that finds nothing to
        reserve waits for this, then takes over what a dead worker left."""
        d = t.deliveries
        stamp = now.isoformat()
        held = or_(
            d.c.status == DeliveryStatus.SENDING.value,
            d.c.status == DeliveryStatus.PENDING.value,
            and_(d.c.status == DeliveryStatus.UNCERTAIN.value, d.c.ambiguous <= 1),
        )
        with self.engine.connect() as conn:
            first = conn.execute(
                select(func.min(d.c.lease_until)).where(
                    d.c.edition_id == edition_id, held, d.c.lease_until >= stamp
                )
            ).scalar()
            if first is None:
                # mid-send rows whose lease ran out: recoverable now
                stale = conn.execute(
                    select(func.count()).where(
                        d.c.edition_id == edition_id,
                        d.c.status == DeliveryStatus.SENDING.value,
                    )
                ).scalar_one()
                return now if stale else None
        return datetime.fromisoformat(first)
