"""The arXiv announcement calendar, table-driven, and how collect reports each case."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from conftest import CLI
from newsletter.schedule import (
    FeedDay,
    classify,
    default_holidays,
    last_announcement,
    previous_announcement,
)

HOLIDAYS = default_holidays({2025, 2026}) | {date(2026, 11, 25)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 24, 12), date(2026, 11, 23)),  # Tuesday: Monday evening's announcement
        (utc(2026, 11, 27, 12), date(2026, 11, 26)),  # Friday: Thursday evening's
        (utc(2026, 11, 28, 12), None),  # Saturday: none on Friday evening
        (utc(2026, 11, 29, 12), None),  # Sunday: none on Saturday evening
        (utc(2026, 11, 30, 12), date(2026, 11, 29)),  # Monday: Sunday evening's
        (utc(2026, 11, 26, 12), None),  # Thursday after a holiday Wednesday
        (utc(2025, 12, 26, 12), None),  # the day after 25 December (a default holiday)
        (utc(2025, 12, 27, 2), None),  # Friday 21:00 Eastern: no announcement on Fridays
        (utc(2026, 11, 2, 0, 30), None),  # fall-back Sunday, 19:30 EST: still Saturday's none
        (utc(2026, 11, 2, 1, 30), date(2026, 11, 1)),  # 20:30 EST: Sunday's is out
        (utc(2026, 3, 9, 0, 30), date(2026, 3, 8)),  # spring-forward Sunday, 20:30 EDT
    ],
)
def test_last_announcement(now: datetime, expected: date | None) -> None:
    got = last_announcement(now, HOLIDAYS)
    assert (got.date() if got else None) == expected
    if got:
        assert (got.hour, got.minute) == (20, 0)


def test_previous_announcement_skips_weekends_and_holidays() -> None:
    assert previous_announcement(utc(2026, 11, 29, 12), HOLIDAYS).date() == date(2026, 11, 26)
    assert previous_announcement(utc(2026, 11, 26, 12), HOLIDAYS).date() == date(2026, 11, 24)


@pytest.mark.parametrize(
    ("now", "count", "same_as_before", "before", "expected"),
    [
        (utc(2026, 11, 24, 12), 5, False, None, FeedDay.NEW),
        (utc(2026, 11, 28, 12), 0, False, None, FeedDay.EXPECTED_EMPTY),
        (utc(2026, 11, 24, 12), 0, False, None, FeedDay.ANOMALY),
        # Wednesday's feed still holds Monday's items although Tuesday announced: stale
        (utc(2026, 11, 25, 12), 5, True, utc(2026, 11, 24, 1), FeedDay.STALE),
        # fetched twice after the same announcement: nothing wrong
        (utc(2026, 11, 24, 18), 5, True, utc(2026, 11, 24, 1), FeedDay.NEW),
    ],
)
def test_classify(
    now: datetime, count: int, same_as_before: bool, before: datetime | None, expected: FeedDay
) -> None:
    got = classify(
        now=now,
        holidays=HOLIDAYS,
        item_count=count,
        items_hash="h",
        previous_hash="h" if same_as_before else "other",
        previous_announcement_at=before,
    )
    assert got is expected


EMPTY_ARXIV = """<?xml version="1.0"?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" version="2.0"><channel>
<title>cs.CL updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs.CL</link>
<description>cs.CL updates</description>
<skipDays><day>Saturday</day><day>Sunday</day></skipDays>
</channel></rss>
"""


@pytest.mark.parametrize(
    ("now", "strict", "code", "status"),
    [
        ("2026-11-28T12:00:00+00:00", True, 0, "nothing, as expected today"),
        ("2026-11-24T12:00:00+00:00", False, 0, "nothing on an announcement day"),
        ("2026-11-24T12:00:00+00:00", True, 3, "nothing on an announcement day"),
    ],
)
def test_collect_reports_the_calendar_case(
    cli: CLI, tmp_path: Path, now: str, strict: bool, code: int, status: str
) -> None:
    import json

    from conftest import write_config

    feed = tmp_path / "cs.CL.xml"
    feed.write_text(EMPTY_ARXIV)
    config = write_config(
        tmp_path, 2525, sources=f'[[sources]]\nname = "cl"\nkind = "arxiv-rss"\nurl = "{feed}"\n'
    )
    args = ["--config", config, "--now", now, "collect", "--json"] + (
        ["--strict"] if strict else []
    )
    got, out, _ = cli(*args)
    row = json.loads(out.strip().splitlines()[-1])
    assert got == code
    assert row["status"] == status
    assert bool(row["warnings"]) == (status != "nothing, as expected today")


def test_a_stale_feed_stays_stale_until_its_items_change() -> None:
    from newsletter.models import Paper
    from newsletter.sources import SourceSpec, SourceState, collect_one, items_hash
    from newsletter.sources.fetch import FetchResult

    monday_items = [Paper("2611.00001", "One", "cl", version=1)]

    class Same:
        def fetch(self, location: str, validators: object = None) -> FetchResult:
            return FetchResult(
                b'<?xml version="1.0"?><rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
                b'version="2.0"><channel><title>t</title><item><title>One</title>'
                b'<guid isPermaLink="false">oai:arXiv.org:2611.00001v1</guid>'
                b"<description>arXiv:2611.00001v1 Announce Type: new Abstract: x</description>"
                b"</item></channel></rss>"
            )

    spec = SourceSpec("cl", "arxiv-rss", "x")
    state = SourceState(
        items_hash=items_hash(monday_items),
        announcement_at=previous_announcement(utc(2026, 11, 24, 12), HOLIDAYS),
    )
    later = utc(2026, 11, 25, 1, 5)  # Tuesday 20:05 Eastern: a new announcement is out
    first = collect_one(spec, Same(), later, state, HOLIDAYS)
    assert first.day is FeedDay.STALE and first.state is not None
    again = collect_one(spec, Same(), utc(2026, 11, 25, 1, 35), first.state, HOLIDAYS)
    assert again.day is FeedDay.STALE
