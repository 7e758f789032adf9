"""Editions and the deliveries ledger: claimed before SMTP, marked after, never twice."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update

from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, chunks


class LedgerStore(StoreBase):
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
        """Rows left ``sending`` by a killed run may have been accepted: mark them uncertain.

        Only safe under the run lock: no other process can be mid-transaction on them.
        """
        d = t.deliveries
        with self.engine.begin() as conn:
            res = conn.execute(
                update(d)
                .where(d.c.edition_id == edition_id, d.c.status == DeliveryStatus.SENDING.value)
                .values(
                    status=DeliveryStatus.UNCERTAIN.value,
                    ambiguous=d.c.ambiguous + 1,
                    last_reply="interrupted during sending",
                    updated_at=now.isoformat(),
                )
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
        self,
        delivery_id: int,
        message_id: str,
        paper_ids: Sequence[str],
        now: datetime,
        max_attempts: int,
    ) -> bool:
        """Atomically move a row to ``sending`` before the SMTP transaction; False if not ours.

        Claimable: pending rows under the attempt cap, and uncertain rows not yet resent (an
        uncertain row is resent once, with its Message-ID). The subscriber must still be
        active at this moment: unsubscribing wins even mid-edition.
        """
        d, s = t.deliveries, t.subscribers
        active = exists().where(
            s.c.id == d.c.subscriber_id, s.c.status == SubscriberStatus.ACTIVE.value
        )
        claimable = or_(
            and_(d.c.status == DeliveryStatus.PENDING.value, d.c.attempts < max_attempts),
            and_(d.c.status == DeliveryStatus.UNCERTAIN.value, d.c.ambiguous <= 1),
        )
        with self.engine.begin() as conn:
            res = conn.execute(
                update(d)
                .where(d.c.id == delivery_id, claimable, active)
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
                    last_reply=reply[:1000],
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
        """Move a row to ``status`` with the server's reply (an ambiguous end counts once)."""
        d = t.deliveries
        values: dict[str, Any] = {
            "status": status.value,
            "last_reply": reply[:1000],
            "updated_at": now.isoformat(),
        }
        if status is DeliveryStatus.UNCERTAIN:
            values["ambiguous"] = d.c.ambiguous + 1
        with self.engine.begin() as conn:
            conn.execute(update(d).where(d.c.id == delivery_id).values(**values))

    def release(self, delivery_id: int, previous: DeliveryStatus, now: datetime) -> None:
        """Undo a claim whose transaction never started (server unreachable)."""
        d = t.deliveries
        with self.engine.begin() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == DeliveryStatus.SENDING.value)
                .values(
                    status=previous.value, attempts=d.c.attempts - 1, updated_at=now.isoformat()
                )
            )

    def last_sent_dates(self, subscriber_ids: Sequence[int]) -> dict[int, date]:
        """Each subscriber's most recent edition that reached them."""
        d, e = t.deliveries, t.editions
        out: dict[int, date] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(subscriber_ids):
                q = (
                    select(d.c.subscriber_id, func.max(e.c.edition_date))
                    .join(e, e.c.id == d.c.edition_id)
                    .where(d.c.status == DeliveryStatus.SENT.value, d.c.subscriber_id.in_(chunk))
                    .group_by(d.c.subscriber_id)
                )
                for sid, day in conn.execute(q):
                    out[sid] = date.fromisoformat(day)
        return out

    def sent_paper_ids(
        self, subscriber_ids: Sequence[int], paper_ids: Sequence[str]
    ) -> dict[int, set[str]]:
        """For each subscriber, which of ``paper_ids`` they were already sent."""
        sp = t.sent_papers
        out: dict[int, set[str]] = {}
        if not paper_ids:
            return out
        with self.engine.connect() as conn:
            for chunk in chunks(paper_ids):
                for sid, pid in conn.execute(
                    select(sp.c.subscriber_id, sp.c.paper_id).where(sp.c.paper_id.in_(chunk))
                ):
                    out.setdefault(sid, set()).add(pid)
        wanted = set(subscriber_ids)
        return {k: v for k, v in out.items() if k in wanted}
