"""Sign-up state: single-use confirmation nonces and rate-limit events, in the database so
several web processes share them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.models import SubscriberStatus
from newsletter.store import schema as t
from newsletter.store.base import StoreBase
from newsletter.store.subscribers import email_hash


class SignupStore(StoreBase):
    def sign_up(
        self, email: str, topics: Sequence[str], frequency: str, now: datetime
    ) -> tuple[int | None, str]:
        try:
            return self._sign_up(email, topics, frequency, now)
        except IntegrityError:  # the same address signed up at the same moment elsewhere
            return self._sign_up(email, topics, frequency, now)

    def _sign_up(
        self, email: str, topics: Sequence[str], frequency: str, now: datetime
    ) -> tuple[int | None, str]:
        """A sign-up from the web form: (subscriber id, what it was). "added" creates a
        pending subscriber; "pending" updates its choices (they are not confirmed yet);
        "active" and "suppressed" change nothing, so a stranger can neither alter a
        subscriber's choices nor revive an address that left (its id is None)."""
        s = t.subscribers
        stamp = now.isoformat()
        values = {"topics": json.dumps(list(topics)), "frequency": frequency}
        with self.engine.begin() as conn:
            forgotten = conn.execute(
                select(t.suppressions.c.email_hash).where(
                    t.suppressions.c.email_hash == email_hash(email)
                )
            ).first()
            if forgotten is not None:
                return None, "suppressed"
            row = conn.execute(select(s.c.id, s.c.status).where(s.c.email == email)).first()
            if row is None:
                sid = conn.execute(
                    s.insert().values(
                        email=email,
                        name="",
                        status=SubscriberStatus.PENDING.value,
                        created_at=stamp,
                        updated_at=stamp,
                        **values,
                    )
                ).inserted_primary_key
                assert sid is not None
                return int(sid[0]), "added"
            if row.status == SubscriberStatus.PENDING.value:
                conn.execute(s.update().where(s.c.id == row.id).values(updated_at=stamp, **values))
                return int(row.id), "pending"
            if row.status == SubscriberStatus.ACTIVE.value:
                return int(row.id), "active"
            return None, "suppressed"

    def update_preferences(
        self,
        subscriber_id: int,
        *,
        topics: Sequence[str],
        keywords: Sequence[str],
        frequency: str,
        timezone: str,
        paused: bool,
        now: datetime,
        send_hour: int | None = None,
        send_weekday: int | None = None,
    ) -> bool:
        """Save a subscriber's choices from the preferences page; only an active subscriber
        has any (False otherwise: unsubscribed is final)."""
        s = t.subscribers
        stamp = now.isoformat()
        with self.engine.begin() as conn:
            res = conn.execute(
                s.update()
                .where(s.c.id == subscriber_id, s.c.status == SubscriberStatus.ACTIVE.value)
                .values(
                    topics=json.dumps(list(topics)),
                    keywords=json.dumps(list(keywords)),
                    frequency=frequency,
                    timezone=timezone,
                    send_hour=send_hour,
                    send_weekday=send_weekday,
                    updated_at=stamp,
                    paused_at=func.coalesce(s.c.paused_at, stamp) if paused else None,
                )
            )
        return bool(res.rowcount)

    def withdraw_confirmation(self, nonce: str) -> None:
        """Forget a nonce whose email could not be sent, so the address may try again."""
        c = t.confirmations
        with self.engine.begin() as conn:
            conn.execute(delete(c).where(c.c.nonce == nonce, c.c.used_at.is_(None)))

    def issue_confirmation(
        self, subscriber_id: int, now: datetime, every: timedelta = timedelta(hours=24)
    ) -> str | None:
        """A fresh nonce for a confirmation email, or None when this subscriber was sent one
        less than ``every`` ago (one confirmation email a day per address)."""
        c = t.confirmations
        with self.engine.begin() as conn:
            recent = conn.execute(
                select(func.count()).where(
                    c.c.subscriber_id == subscriber_id,
                    c.c.created_at > (now - every).isoformat(),
                )
            ).scalar_one()
            if recent:
                return None
            nonce = secrets.token_urlsafe(24)
            conn.execute(
                c.insert().values(
                    nonce=nonce, subscriber_id=subscriber_id, created_at=now.isoformat()
                )
            )
        return nonce

    def confirmation_usable(self, nonce: str, now: datetime, max_age: timedelta) -> bool:
        """Whether ``confirm`` would accept this nonce now (read only: the GET page)."""
        c, s = t.confirmations, t.subscribers
        q = (
            select(func.count())
            .select_from(c.join(s, s.c.id == c.c.subscriber_id))
            .where(
                c.c.nonce == nonce,
                c.c.used_at.is_(None),
                c.c.created_at > (now - max_age).isoformat(),
                s.c.status == SubscriberStatus.PENDING.value,
            )
        )
        with self.engine.connect() as conn:
            return bool(conn.execute(q).scalar_one())

    def confirm(self, nonce: str, now: datetime, max_age: timedelta) -> int | None:
        """Use a confirmation nonce once: the pending subscriber becomes active. Returns the
        subscriber id, or None for an unknown, used or expired nonce (or a subscriber who
        is not pending: unsubscribed and bounced addresses stay suppressed)."""
        c, s = t.confirmations, t.subscribers
        stamp = now.isoformat()
        with self.engine.begin() as conn:
            used = conn.execute(
                update(c)
                .where(
                    c.c.nonce == nonce,
                    c.c.used_at.is_(None),
                    c.c.created_at > (now - max_age).isoformat(),
                )
                .values(used_at=stamp)
            )
            if used.rowcount != 1:
                return None
            sid = int(
                conn.execute(select(c.c.subscriber_id).where(c.c.nonce == nonce)).scalar_one()
            )
            res = conn.execute(
                update(s)
                .where(s.c.id == sid, s.c.status == SubscriberStatus.PENDING.value)
                .values(status=SubscriberStatus.ACTIVE.value, confirmed_at=stamp, updated_at=stamp)
            )
            return sid if res.rowcount == 1 else None

    def allow(self, bucket: str, key: str, now: datetime, limit: int, window: timedelta) -> bool:
        """Record an event and say whether it is within ``limit`` per ``window`` for this
        key (a refused event is not recorded, so a flood does not extend its own ban)."""
        r = t.rate_events
        since = (now - window).isoformat()
        with self.engine.begin() as conn:
            conn.execute(delete(r).where(r.c.bucket == bucket, r.c.at <= since))
            count = conn.execute(
                select(func.count()).where(r.c.bucket == bucket, r.c.key == key, r.c.at > since)
            ).scalar_one()
            if count >= limit:
                return False
            conn.execute(r.insert().values(bucket=bucket, key=key[:200], at=now.isoformat()))
        return True
