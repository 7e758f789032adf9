"""Sending pace: the sliding-window caps hold on an injected clock, and nothing waits more
than the caps need. The fake sleep only advances the fake clock: no real time passes."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence

import pytest

from newsletter.pace import RateLimiter, Window, per_second_window

T0 = 10_000.0
EPS = 1e-9  # float slack for window edges (sums of delays), far below any real interval


class FakeTime:
    """A list-backed clock and an async sleep that moves it forward."""

    def __init__(self, start: float = T0) -> None:
        self.now = [start]
        self.sleeps: list[float] = []
        self.reads = 0

    def clock(self) -> float:
        self.reads += 1
        return self.now[0]

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now[0] += seconds
        await asyncio.sleep(0)  # yield to other tasks, as a real sleep would


def _acquire(limiter: RateLimiter, time: FakeTime, n: int) -> list[float]:
    """Acquire ``n`` times in a row; the clock reading when each was granted."""

    async def go() -> list[float]:
        starts = []
        for _ in range(n):
            await limiter.acquire()
            starts.append(time.now[0])
        return starts

    return asyncio.run(go())


def most_in_any_window(starts: Sequence[float], width: float) -> int:
    """The most starts in any half-open window [t, t + width). The fullest window can always
    be slid to begin at one of the starts, so only those need checking."""
    ordered = sorted(starts)
    return max(
        (bisect_left(ordered, s + width - EPS) - i for i, s in enumerate(ordered)), default=0
    )


@pytest.mark.parametrize(
    ("starts", "width", "most"),
    [
        ([], 1.0, 0),
        ([0.0, 0.5, 0.99], 1.0, 3),
        ([0.0, 0.5, 1.0], 1.0, 2),  # 1.0 is outside [0, 1)
        ([0.0, 0.0, 0.0, 5.0], 1.0, 3),
        ([3.0, 0.0, 2.5, 0.2], 1.0, 2),
    ],
)
def test_window_counter(starts: list[float], width: float, most: int) -> None:
    assert most_in_any_window(starts, width) == most


@pytest.mark.parametrize(
    ("rate", "count", "seconds"),
    [(5, 5, 1.0), (0.5, 1, 2.0), (20, 20, 1.0), (1, 1, 1.0), (2.5, 2, 0.8), (0.1, 1, 10.0)],
)
def test_per_second_window(rate: float, count: int, seconds: float) -> None:
    window = per_second_window(rate)
    assert window.count == count
    assert window.seconds == pytest.approx(seconds)
    assert window.count / window.seconds == pytest.approx(rate)


@pytest.mark.parametrize(
    ("per_second", "n", "cap", "width"),
    [
        (5, 23, 5, 1.0),
        (0.5, 6, 1, 2.0),
        (20, 65, 20, 1.0),
        (1, 4, 1, 1.0),
    ],
)
def test_per_second_cap_holds_in_every_window(
    per_second: float, n: int, cap: int, width: float
) -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(per_second, 0, clock=time.clock, sleep=time.sleep)
    starts = _acquire(limiter, time, n)
    assert len(starts) == n
    assert starts == sorted(starts)
    assert most_in_any_window(starts, width) <= cap
    # and no more waiting than the cap needs: bursts of ``cap``, one window apart
    assert starts == pytest.approx([T0 + (i // cap) * width for i in range(n)])
    assert limiter.waited == pytest.approx(starts[-1] - T0)
    assert sum(time.sleeps) == pytest.approx(starts[-1] - T0)


def test_per_hour_cap_holds_in_every_hour() -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(0, 3, clock=time.clock, sleep=time.sleep)
    starts = _acquire(limiter, time, 10)
    assert most_in_any_window(starts, 3600.0) <= 3
    assert starts == pytest.approx([T0 + (i // 3) * 3600.0 for i in range(10)])


def test_both_caps_together() -> None:
    time = FakeTime(0.0)
    limiter = RateLimiter.for_caps(2, 5, clock=time.clock, sleep=time.sleep)
    starts = _acquire(limiter, time, 10)
    assert most_in_any_window(starts, 1.0) <= 2
    assert most_in_any_window(starts, 3600.0) <= 5
    assert starts == pytest.approx([0, 0, 1, 1, 2, 3600, 3600, 3601, 3601, 3602])


@pytest.mark.parametrize("per_second", [0, 0.0])
def test_no_caps_means_no_waiting(per_second: float) -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(per_second, 0, clock=time.clock, sleep=time.sleep)
    starts = _acquire(limiter, time, 1000)
    assert starts == [T0] * 1000
    assert time.sleeps == [] and limiter.waited == 0.0
    assert time.reads == 0  # not even the clock is read
    assert limiter.windows == []


@pytest.mark.parametrize(
    ("recent", "expected"),
    [
        # two starts 100 s ago and 50 s ago: one more now, then each waits for its hour
        ([T0 - 100, T0 - 50], [T0, T0 + 3500, T0 + 3550, T0 + 3600]),
        ([T0 - 100, T0 - 100], [T0, T0 + 3500, T0 + 3500, T0 + 3600]),
        # the cap already reached: the first waits for the oldest of the last three
        ([T0 - 300, T0 - 200, T0 - 100, T0 - 50], [T0 + 3400, T0 + 3500, T0 + 3550]),
        ([T0 - 50, T0 - 300, T0 - 100], [T0 + 3300, T0 + 3500, T0 + 3550]),  # any order
        # older than an hour: they no longer count
        ([T0 - 4000, T0 - 3700, T0 - 3601], [T0, T0, T0, T0 + 3600]),
        ([], [T0, T0, T0, T0 + 3600]),
    ],
)
def test_recent_starts_from_an_earlier_run_count_toward_the_hourly_cap(
    recent: list[float], expected: list[float]
) -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(0, 3, recent=recent, clock=time.clock, sleep=time.sleep)
    starts = _acquire(limiter, time, len(expected))
    assert starts == pytest.approx(expected)
    # (only the last three recent starts: more than three is the earlier run's business)
    assert most_in_any_window([*sorted(recent)[-3:], *starts], 3600.0) <= 3


def test_recent_history_with_a_per_second_cap_too() -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(
        1, 3, recent=[T0 - 100, T0 - 100], clock=time.clock, sleep=time.sleep
    )
    starts = _acquire(limiter, time, 3)
    # both recent starts expire at T0 + 3500; the per-second cap then spaces the two
    assert starts == pytest.approx([T0, T0 + 3500, T0 + 3501])


def test_concurrent_callers_share_the_caps() -> None:
    time = FakeTime()
    limiter = RateLimiter.for_caps(5, 12, clock=time.clock, sleep=time.sleep)
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(4):
            await limiter.acquire()
            starts.append(time.now[0])
            await asyncio.sleep(0)

    async def go() -> None:
        await asyncio.gather(*(worker() for _ in range(6)))

    asyncio.run(go())
    assert len(starts) == 24
    assert most_in_any_window(starts, 1.0) <= 5
    assert most_in_any_window(starts, 3600.0) <= 12
    assert sorted(starts) == pytest.approx(
        [T0 + (i // 5) * 1.0 for i in range(12)] + [T0 + 3600 + (i // 5) for i in range(12)]
    )


def test_custom_windows() -> None:
    time = FakeTime(0.0)
    limiter = RateLimiter(
        [Window(2, 10.0), Window(3, 100.0, history=[-50.0])], time.clock, time.sleep
    )
    starts = _acquire(limiter, time, 5)
    assert most_in_any_window(starts, 10.0) <= 2
    assert most_in_any_window([-50.0, *starts], 100.0) <= 3
    assert starts == pytest.approx([0, 0, 50, 100, 100])


@pytest.mark.parametrize(
    ("count", "seconds", "history", "now", "wait"),
    [
        (3, 60.0, [], 0.0, 0.0),
        (3, 60.0, [0.0, 1.0], 2.0, 0.0),
        (3, 60.0, [0.0, 1.0, 2.0], 2.0, 58.0),
        (3, 60.0, [0.0, 1.0, 2.0], 60.0, 0.0),
        (3, 60.0, [0.0, 1.0, 2.0, 3.0], 10.0, 51.0),  # only the last three count
        (1, 2.0, [5.0], 6.5, 0.5),
    ],
)
def test_window_wait(
    count: int, seconds: float, history: list[float], now: float, wait: float
) -> None:
    assert Window(count, seconds, history).wait(now) == pytest.approx(wait)
