"""Time rules: the arXiv announcement calendar, and when each subscriber's edition is due.

arXiv announces Sunday to Thursday at 20:00 US Eastern; not on Friday or Saturday, nor on
its published holidays. Its RSS feed carries the latest announcement until the next 20:00
boundary, so at any moment the feed should be non-empty exactly when the most recent 20:00
Eastern boundary fell on an announcing day. Pure functions of ``now``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from newsletter.models import Subscriber

ARXIV_ZONE = ZoneInfo("America/New_York")
ANNOUNCE_AT = time(20, 0)
ANNOUNCE_WEEKDAYS = frozenset({6, 0, 1, 2, 3})  # Sunday .. Thursday


def default_holidays(years: Collection[int]) -> frozenset[date]:
    """The holidays arXiv keeps every year (25 December, 1 January); add others in config."""
    return frozenset(d for y in years for d in (date(y, 12, 25), date(y, 1, 1)))


def announces_on(day: date, holidays: Collection[date]) -> bool:
    """Whether arXiv announces on the evening of ``day`` (Eastern)."""
    return day.weekday() in ANNOUNCE_WEEKDAYS and day not in holidays


def last_boundary(now: datetime) -> datetime:
    """The most recent 20:00 Eastern at or before ``now``."""
    local = now.astimezone(ARXIV_ZONE)
    today = datetime.combine(local.date(), ANNOUNCE_AT, tzinfo=ARXIV_ZONE)
    return today if local >= today else today - timedelta(days=1)


def last_announcement(now: datetime, holidays: Collection[date]) -> datetime | None:
    """When the announcement the feed should carry happened (None: the feed is empty now)."""
    boundary = last_boundary(now)
    return boundary if announces_on(boundary.date(), holidays) else None


def previous_announcement(now: datetime, holidays: Collection[date]) -> datetime:
    """The most recent real announcement at or before ``now`` (looks back up to 3 weeks)."""
    boundary = last_boundary(now)
    for _ in range(21):
        if announces_on(boundary.date(), holidays):
            return boundary
        boundary = datetime.combine(
            boundary.date() - timedelta(days=1), ANNOUNCE_AT, tzinfo=ARXIV_ZONE
        )
    return boundary


class FeedDay(StrEnum):
    """What an arXiv feed's contents mean today."""

    NEW = "new items"
    EXPECTED_EMPTY = "nothing, as expected today"
    ANOMALY = "nothing on an announcement day"
    STALE = "same items as the previous announcement"


def classify(
    *,
    now: datetime,
    holidays: Collection[date],
    item_count: int,
    items_hash: str,
    previous_hash: str | None,
    previous_announcement_at: datetime | None,
) -> FeedDay:
    """Which of the four cases an arXiv feed fetched at ``now`` is in."""
    current = last_announcement(now, holidays)
    if item_count == 0:
        return FeedDay.ANOMALY if current is not None else FeedDay.EXPECTED_EMPTY
    if (
        previous_hash == items_hash
        and previous_announcement_at is not None
        and previous_announcement(now, holidays) > previous_announcement_at
    ):
        return FeedDay.STALE
    return FeedDay.NEW


# ---- the send schedule ---------------------------------------------------------------------

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``at`` on ``day`` in ``zone`` as an aware UTC instant, defined on every day.

    A wall time the spring-forward gap skips (02:30 in New York on 8 March 2026) is taken
    with the offset from before the change, so it lands just after the gap (03:30); a time
    the autumn repeats (01:30 on 1 November) is its first occurrence. Either way one
    instant per day, so a schedule fires once a day even then.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(ZoneInfo("UTC"))


def latest_slot(now: datetime, zone: ZoneInfo, at: time, weekday: int | None) -> date:
    """The local date of the most recent scheduled send at or before ``now``: daily at
    ``at``, or weekly on ``weekday`` (0 = Monday) at ``at``.

    After downtime this is the one edition to catch up (not one per missed day)."""
    today = now.astimezone(zone).date()
    for back in range(0, 9):
        day = today - timedelta(days=back)
        if weekday is not None and day.weekday() != weekday:
            continue
        if local_instant(day, at, zone) <= now:
            return day
    raise AssertionError("a daily or weekly slot is always within 8 days")


def next_slot(now: datetime, zone: ZoneInfo, at: time, weekday: int | None) -> datetime:
    """The first scheduled send strictly after ``now`` (for ``status``)."""
    today = now.astimezone(zone).date()
    for ahead in range(0, 9):
        day = today + timedelta(days=ahead)
        if weekday is not None and day.weekday() != weekday:
            continue
        instant = local_instant(day, at, zone)
        if instant > now:
            return instant
    raise AssertionError("a daily or weekly slot is always within 8 days")


def parse_clock(value: str) -> time:
    """``HH:MM`` (24-hour) as a time; ValueError with what is expected otherwise."""
    hours, sep, minutes = value.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{value!r}: expected a time as HH:MM, e.g. 07:00")
    h, m = int(hours), int(minutes)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"{value!r}: expected a time between 00:00 and 23:59")
    return time(h, m)


@dataclass(frozen=True, slots=True)
class SlotRule:
    """When a subscriber's edition is due: their hour (or the list's ``send_at``), in their
    time zone, daily or on their weekday (or the list's ``weekly_day``)."""

    default_at: time
    default_weekday: int

    def _when(self, when: When) -> tuple[ZoneInfo, time, int | None]:
        zone, frequency, hour, weekday = when
        at = time(hour) if hour is not None else self.default_at
        day = None
        if frequency == "weekly":
            day = weekday if weekday is not None else self.default_weekday
        return ZoneInfo(zone), at, day

    def slot(self, sub: Subscriber | When, now: datetime) -> date:
        """The edition (local date) this subscriber is owed at ``now``."""
        return latest_slot(now, *self._when(when_of(sub)))

    def owed(
        self,
        sub: Subscriber | When,
        last: date | None,
        joined: str,
        now: datetime,
        cache: dict[When, date] | None = None,
    ) -> date | None:
        """The edition due to this subscriber now, or None: their latest slot, when it is
        newer than their last edition (a first edition: the first slot after joining).
        ``cache`` holds slots already worked out at ``now``: subscribers who share a time
        zone, frequency, hour and weekday share them."""
        when = when_of(sub)
        day = cache.get(when) if cache is not None else None
        if day is None:
            day = self.slot(when, now)
            if cache is not None:
                cache[when] = day
        if last is None:
            return day if self.slot(when, datetime.fromisoformat(joined)) < day else None
        return day if last < day else None

    def next_send(self, sub: Subscriber | When, now: datetime) -> datetime:
        """When this subscriber's next edition is due after ``now``."""
        return next_slot(now, *self._when(when_of(sub)))


When = tuple[str, str, int | None, int | None]  # time zone, frequency, hour, weekday


def when_of(sub: Subscriber | When) -> When:
    """What decides a subscriber's slots; subscribers who share it share every slot."""
    if isinstance(sub, tuple):
        return sub
    return (sub.timezone, sub.frequency, sub.send_hour, sub.send_weekday)
