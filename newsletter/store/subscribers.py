"""Subscribers: one row per address; suppression (unsubscribed, bounced) always wins."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from newsletter.models import (
    Subscriber,
    SubscriberStatus,
)
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, chunks


class SubscriberStore(StoreBase):
    def upsert_subscriber(self, sub: Subscriber, now: datetime) -> str:
        """Add or update by email. Returns "added", "updated", "unchanged" or "suppressed".

        Suppression wins: an unsubscribed or bounced address is never brought back here.
        """
        stamp = now.isoformat()
        values = {
            "name": sub.name,
            "topics": json.dumps(list(sub.topics)),
            "keywords": json.dumps(list(sub.keywords)),
            "authors": json.dumps(list(sub.authors)),
            "exclude": json.dumps(list(sub.exclude)),
            "frequency": sub.frequency,
            "timezone": sub.timezone,
            "send_hour": sub.send_hour,
            "send_weekday": sub.send_weekday,
        }
        with self.engine.begin() as conn:
            forgotten = conn.execute(
                select(t.suppressions.c.email_hash).where(
                    t.suppressions.c.email_hash == email_hash(sub.email)
                )
            ).first()
            if forgotten is not None:
                return "suppressed"
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
                        paused_at=stamp if sub.paused else None,
                        **values,
                    )
                )
                return "added"
            if row["status"] in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
                return "suppressed"
            was_paused = row["paused_at"] is not None
            if all(row[k] == v for k, v in values.items()) and was_paused == sub.paused:
                return "unchanged"
            paused_at = (row["paused_at"] or stamp) if sub.paused else None
            conn.execute(
                t.subscribers.update()
                .where(t.subscribers.c.id == row["id"])
                .values(updated_at=stamp, paused_at=paused_at, **values)
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

    def forget(self, email: str, now: datetime) -> bool:
        """Delete everything personal about an address; keep only a hash of it, so no import
        or sign-up brings it back. Returns False when the address is unknown."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(t.subscribers.c.id).where(t.subscribers.c.email == email)
            ).first()
            if row is None:
                return False
            sid = row.id
            conn.execute(t.sent_papers.delete().where(t.sent_papers.c.subscriber_id == sid))
            conn.execute(t.confirmations.delete().where(t.confirmations.c.subscriber_id == sid))
            conn.execute(t.deliveries.delete().where(t.deliveries.c.subscriber_id == sid))
            conn.execute(t.subscribers.delete().where(t.subscribers.c.id == sid))
            conn.execute(
                self._insert_ignore(t.suppressions).values(
                    email_hash=email_hash(email), reason="forgotten", created_at=now.isoformat()
                )
            )
        return True

    def unsubscribe_id(self, subscriber_id: int, now: datetime) -> bool:
        """Suppress by id (the unsubscribe link): unsubscribing wins over any later import."""
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

    def subscriber_pages(
        self, status: SubscriberStatus, size: int = 1000
    ) -> Iterator[list[Subscriber]]:
        """Subscribers in ``status`` a page at a time, by id, so a big list is never all in
        memory."""
        after = 0
        while True:
            q = (
                select(t.subscribers)
                .where(t.subscribers.c.status == status.value, t.subscribers.c.id > after)
                .order_by(t.subscribers.c.id)
                .limit(size)
            )
            with self.engine.connect() as conn:
                page = [_subscriber(r) for r in conn.execute(q).mappings()]
            if not page:
                return
            yield page
            after = page[-1].id

    def subscribers_by_id(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        out: dict[int, Subscriber] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                q = select(t.subscribers).where(t.subscribers.c.id.in_(chunk))
                for r in conn.execute(q).mappings():
                    out[r["id"]] = _subscriber(r)
        return out

    def subscriber(self, *, email: str | None = None, id: int | None = None) -> Subscriber | None:
        col, value = (
            (t.subscribers.c.email, email) if email is not None else (t.subscribers.c.id, id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(select(t.subscribers).where(col == value)).mappings().first()
        return _subscriber(row) if row else None


def email_hash(email: str) -> str:
    """How a forgotten address is remembered: only enough to refuse it again."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        status=SubscriberStatus(row["status"]),
        topics=tuple(json.loads(row["topics"])),
        keywords=tuple(json.loads(row["keywords"])),
        authors=tuple(json.loads(row["authors"])),
        exclude=tuple(json.loads(row["exclude"])),
        frequency=row["frequency"],
        timezone=row["timezone"],
        paused=row["paused_at"] is not None,
        send_hour=row["send_hour"],
        send_weekday=row["send_weekday"],
    )
