"""When editions go out: slots across the 2026 DST changes (pure), a simulated week of
``run`` ticks on an injected clock through a real SMTP server, downtime, and the wiring of
APScheduler's jobs."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import SECRET, setup_edition
from newsletter.deliver import SMTPSender
from newsletter.models import Subscriber
from newsletter.schedule import latest_slot, local_instant, next_slot
from newsletter.scheduler import Runner, build_scheduler
from newsletter.smtp_server import LocalSMTPServer
from newsletter.store import Store
from newsletter.subscriptions import Signer

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC_Z = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("day", "at", "zone", "utc"),
    [
        (date(2026, 3, 7), time(2, 30), NY, datetime(2026, 3, 7, 7, 30, tzinfo=UTC)),  # EST
        # the gap: 02:30 does not exist on 8 March in New York; it lands at 03:30 EDT
        (date(2026, 3, 8), time(2, 30), NY, datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
        (date(2026, 3, 9), time(2, 30), NY, datetime(2026, 3, 9, 6, 30, tzinfo=UTC)),  # EDT
        # 01:30 happens twice on 1 November: the first one
        (date(2026, 11, 1), time(1, 30), NY, datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        (date(2026, 3, 29), time(2, 30), BERLIN, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        (date(2026, 3, 29), time(7, 0), BERLIN, datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
        (date(2026, 10, 25), time(2, 30), BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (date(2026, 10, 25), time(7, 0), BERLIN, datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),
    ],
)
def test_local_instant_is_defined_on_every_day(
    day: date, at: time, zone: ZoneInfo, utc: datetime
) -> None:
    assert local_instant(day, at, zone) == utc


@pytest.mark.parametrize(
    ("now", "weekday", "slot"),
    [
        (datetime(2026, 3, 8, 7, 29, tzinfo=UTC), None, date(2026, 3, 7)),  # before 03:30 EDT
        (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), None, date(2026, 3, 8)),
        (datetime(2026, 3, 11, 12, tzinfo=UTC), 0, date(2026, 3, 9)),  # Wednesday: Monday's
        (datetime(2026, 3, 9, 6, 29, tzinfo=UTC), 0, date(2026, 3, 2)),  # Monday, too early
    ],
)
def test_latest_slot(now: datetime, weekday: int | None, slot: date) -> None:
    assert latest_slot(now, NY, time(2, 30), weekday) == slot


def test_next_slot_is_strictly_after() -> None:
    at = local_instant(date(2026, 3, 8), time(2, 30), NY)
    assert next_slot(at, NY, time(2, 30), None) == local_instant(date(2026, 3, 9), time(2, 30), NY)
    assert next_slot(at - timedelta(seconds=1), NY, time(2, 30), None) == at


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


PEOPLE: dict[str, dict[str, object]] = {
    # the list's default time (send_at 02:30): in the New York gap on 8 March
    "ny-daily@example.org": {"timezone": "America/New_York"},
    "berlin-daily@example.org": {"timezone": "Europe/Berlin", "send_hour": 2},
    "ny-weekly@example.org": {"timezone": "America/New_York", "frequency": "weekly"},
    "berlin-weekly@example.org": {
        "timezone": "Europe/Berlin",
        "frequency": "weekly",
        "send_hour": 7,
        "send_weekday": 6,
    },
}


def _runner(
    tmp_path: Path, port: Callable[[], int], clock: Clock, joined: datetime | None = None
) -> tuple[Runner, Store, dict[str, Subscriber]]:
    config, store = setup_edition(
        tmp_path,
        port(),
        {},
        extra='[schedule]\nsend_at = "02:30"\nweekly_day = "monday"\n'
        "[delivery]\nretry_base_seconds = 0.01\nretry_max_seconds = 0.05\n",
    )
    # an edition every time, papers or not: what is counted here is when, not what
    config = config.model_copy(
        update={"digest": config.digest.model_copy(update={"send_empty": True})}
    )
    subs = {}
    for email, fields in PEOPLE.items():
        sub = Subscriber(0, email, topics=("llm",), **fields)  # type: ignore[arg-type]
        store.upsert_subscriber(sub, joined or clock())
        found = store.subscriber(email=email)
        assert found is not None
        subs[email] = found

    def connect() -> SMTPSender:
        return SMTPSender("127.0.0.1", port(), timeout=5)

    runner = Runner(config, store, connect, Signer([SECRET]), SECRET, clock)
    return runner, store, subs


async def _ticks(runner: Runner, clock: Clock, end: datetime, step: timedelta) -> None:
    while clock.now < end:
        await runner.send_due()
        clock.now += step


def _sent(server: LocalSMTPServer) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = defaultdict(list)
    for r in server.received:
        msg = message_from_bytes(r.data, policy=policy.default)
        out[r.rcpt_tos[0]].append(parsedate_to_datetime(str(msg["Date"])))
    return out


NOW_MINUS_WEEK = datetime(2026, 2, 20, tzinfo=UTC)

WEEKS = [
    pytest.param(datetime(2026, 3, 4, tzinfo=UTC), id="New York springs forward 8 March"),
    pytest.param(datetime(2026, 3, 25, tzinfo=UTC), id="Berlin springs forward 29 March"),
    pytest.param(datetime(2026, 10, 21, tzinfo=UTC), id="Berlin falls back 25 October"),
    pytest.param(datetime(2026, 10, 28, tzinfo=UTC), id="New York falls back 1 November"),
]


@pytest.mark.parametrize("start", WEEKS)
def test_a_week_of_ticks_sends_each_edition_once_at_its_local_time(
    tmp_path: Path, start: datetime
) -> None:
    step = timedelta(minutes=30)
    clock = Clock(start)
    end = start + timedelta(days=8)
    with LocalSMTPServer() as server:
        runner, store, subs = _runner(tmp_path, lambda: server.port, clock)
        asyncio.run(_ticks(runner, clock, end, step))
        store.close()
    sent = _sent(server)
    rule = runner.rule
    for email, sub in subs.items():
        zone = ZoneInfo(sub.timezone)
        times = sent[email]
        days = [t.astimezone(zone).date() for t in times]
        assert len(days) == len(set(days)), f"{email}: two editions on one day: {days}"
        # every send at the first tick at or after the local send time, never before
        for t in times:
            slot = rule.slot(sub, t)
            due = local_instant(
                slot, time(sub.send_hour) if sub.send_hour is not None else time(2, 30), zone
            )
            assert due <= t < due + step, (email, t, due)
        first = start.astimezone(zone).date() + timedelta(days=1)
        last = (end - step).astimezone(zone).date() - timedelta(days=1)
        expected = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        if sub.frequency == "weekly":
            weekday = sub.send_weekday if sub.send_weekday is not None else 0
            expected = [d for d in expected if d.weekday() == weekday]
            assert len(expected) == 1
        assert [d for d in days if first <= d <= last] == expected, email


def test_three_days_down_then_one_catch_up_edition_each(tmp_path: Path) -> None:
    start = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday, after everyone's slot
    clock = Clock(start)
    with LocalSMTPServer() as server:
        up = server.port
        down = {"port": 0}

        def port() -> int:
            return down["port"] or up

        runner, store, _subs = _runner(tmp_path, port, clock, joined=start - timedelta(days=8))
        asyncio.run(runner.send_due())
        first = len(server.received)
        assert first == len(PEOPLE)  # the editions owed (weekly ones: Sunday's and Monday's)
        import socket

        with socket.socket() as s:  # a port nothing listens on: the relay is down
            s.bind(("127.0.0.1", 0))
            down["port"] = s.getsockname()[1]
        # a tick every three hours for three days, each finding the relay down
        asyncio.run(_ticks(runner, clock, start + timedelta(days=3), timedelta(hours=3)))
        assert len(server.received) == first  # nothing got through for three days
        down["port"] = 0  # back up: one tick
        asyncio.run(runner.send_due())
        sent = _sent(server)
        counts = store.delivery_totals()
        store.close()
    later = {e: [t for t in ts if t > start] for e, ts in sent.items()}
    assert later["ny-daily@example.org"] == [clock.now]  # one catch-up, not three
    assert later["berlin-daily@example.org"] == [clock.now]
    assert later["ny-weekly@example.org"] == []  # not due again until next Monday
    assert later["berlin-weekly@example.org"] == []  # not due until Sunday
    # the daily editions of the days down were superseded, not sent late
    assert counts.get("skipped", 0) == 4 and counts.get("pending", 0) == 0


def test_a_new_subscriber_waits_for_their_next_slot(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 12, tzinfo=UTC))  # after everyone's Monday slot
    with LocalSMTPServer() as server:
        runner, store, _ = _runner(tmp_path, lambda: server.port, clock)
        first = asyncio.run(runner.send_due())
        assert first is not None and first.sent == 0  # joined after today's slot
        clock.now = datetime(2026, 3, 3, 12, tzinfo=UTC)  # Tuesday: the daily ones
        asyncio.run(runner.send_due())
        again = asyncio.run(runner.send_due())  # nothing due: no edition built
        store.close()
    assert sorted(_sent(server)) == ["berlin-daily@example.org", "ny-daily@example.org"]
    assert again is not None and again.sent == 0 and again.already_done == 0


def test_a_paused_subscriber_is_not_planned(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 12, tzinfo=UTC))
    with LocalSMTPServer() as server:
        runner, store, subs = _runner(tmp_path, lambda: server.port, clock, NOW_MINUS_WEEK)
        sub = subs["ny-daily@example.org"]
        store.update_preferences(
            sub.id,
            topics=sub.topics,
            keywords=(),
            frequency="daily",
            timezone=sub.timezone,
            paused=True,
            now=clock(),
        )
        asyncio.run(runner.send_due())
        store.close()
    assert "ny-daily@example.org" not in _sent(server)
    assert "berlin-daily@example.org" in _sent(server)


def test_the_scheduler_coalesces_and_collects_in_each_zone(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 2, 12, tzinfo=UTC))
    with LocalSMTPServer() as server:
        runner, store, _ = _runner(tmp_path, lambda: server.port, clock)
        start = datetime(2026, 3, 7, 12, tzinfo=UTC)
        scheduler = build_scheduler(runner, runner.config, start)
        jobs = {j.id: j for j in scheduler.get_jobs()}
        store.close()
    assert {"send", "collect-now", "collect-0"} <= set(jobs)
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time is None  # after downtime: run once, however late
    arxiv = jobs["collect-0"].trigger  # 20:30 America/New_York, across the 8 March change
    first = arxiv.get_next_fire_time(None, start)
    second = arxiv.get_next_fire_time(first, first + timedelta(seconds=1))
    assert first.astimezone(UTC) == datetime(2026, 3, 8, 1, 30, tzinfo=UTC)  # EST
    assert second.astimezone(UTC) == datetime(2026, 3, 9, 0, 30, tzinfo=UTC)  # EDT


def test_uncertain_rows_are_resent_once_not_superseded(tmp_path: Path) -> None:
    from sqlalchemy import text

    start = datetime(2026, 3, 3, 12, tzinfo=UTC)
    clock = Clock(start)
    with LocalSMTPServer() as server:
        runner, store, subs = _runner(tmp_path, lambda: server.port, clock, NOW_MINUS_WEEK)
        asyncio.run(runner.send_due())  # everyone's edition of 3 March
        sid = subs["ny-daily@example.org"].id
        other = subs["berlin-daily@example.org"].id
        with store.engine.begin() as conn:  # a lost connection after DATA, twice for `other`
            conn.execute(
                text(
                    "update deliveries set status='uncertain', ambiguous=:n where subscriber_id=:s"
                ),
                [{"n": 1, "s": sid}, {"n": 2, "s": other}],
            )
        before = len(server.received)
        clock.now = start + timedelta(days=1)  # the next day's slot has come
        asyncio.run(runner.send_due())
        got = [r.rcpt_tos[0] for r in server.received[before:]]
        statuses = dict(
            store.engine.connect()
            .execute(
                text(
                    "select d.subscriber_id || '@' || e.edition_date, d.status from deliveries d "
                    "join editions e on e.id = d.edition_id"
                )
            )
            .all()
        )
        store.close()
    # the uncertain row was resent once (not dropped as superseded), then the new edition
    assert got.count("ny-daily@example.org") == 2
    assert statuses[f"{sid}@2026-03-03"] == "sent"
    # resent twice already: left as it is, never a third copy, nor reopened every tick
    assert got.count("berlin-daily@example.org") == 1
    assert statuses[f"{other}@2026-03-03"] == "uncertain"
