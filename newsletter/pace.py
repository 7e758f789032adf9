"""Sending pace: at most N messages in any window (per second, per hour), as ESPs enforce.

A sliding-window log per limit: the k-th message after one sent at t may not start before
t + window. Clock and sleep are injected so tests can check the schedule without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable


class Window:
    """At most ``count`` starts in any ``seconds``-long window."""

    def __init__(self, count: int, seconds: float, history: Iterable[float] = ()) -> None:
        self.count, self.seconds = count, seconds
        self.starts: deque[float] = deque(sorted(history)[-count:], maxlen=count)

    def wait(self, now: float) -> float:
        if len(self.starts) < self.count:
            return 0.0
        return max(0.0, self.starts[0] + self.seconds - now)


def per_second_window(rate: float) -> Window:
    """``rate`` a second as a whole number of starts per window (0.5/s: one per 2 s)."""
    count = max(1, math.floor(rate))
    return Window(count, count / rate)


class RateLimiter:
    """Waits before each message so that every window's cap holds; callers queue in order."""

    def __init__(
        self,
        windows: Iterable[Window],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.windows = list(windows)
        self.clock, self.sleep = clock, sleep
        self._lock = asyncio.Lock()
        self.waited = 0.0

    @classmethod
    def for_caps(
        cls,
        per_second: float,
        per_hour: int,
        recent: Iterable[float] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> RateLimiter:
        """The limiter for ``[delivery]`` caps (0 = none); ``recent`` are earlier starts on
        ``clock``'s scale, so a restart within the hour still counts them."""
        windows = []
        if per_second > 0:
            windows.append(per_second_window(per_second))
        if per_hour > 0:
            windows.append(Window(per_hour, 3600.0, recent))
        return cls(windows, clock, sleep)

    async def acquire(self) -> None:
        if not self.windows:
            return
        async with self._lock:
            while True:
                now = self.clock()
                delay = max(w.wait(now) for w in self.windows)
                if delay <= 0:
                    break
                self.waited += delay
                await self.sleep(delay)
            for w in self.windows:
                w.starts.append(now)
