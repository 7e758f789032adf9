"""Time rules: the arXiv announcement calendar (and, later, the run schedule).

arXiv announces Sunday to Thursday at 20:00 US Eastern; not on Friday or Saturday, nor on
its published holidays. Its RSS feed carries the latest announcement until the next 20:00
boundary, so at any moment the feed should be non-empty exactly when the most recent 20:00
Eastern boundary fell on an announcing day. Pure functions of ``now``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

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
