"""The ``[schedule]`` section of ``config.toml``: when ``newsletter run`` collects and sends."""

from __future__ import annotations

from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from newsletter.config_delivery import Strict
from newsletter.schedule import WEEKDAYS, parse_clock

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class ScheduleSection(Strict):
    """Defaults for subscribers who chose no time or weekday, and the collection times."""

    # local time (in each subscriber's time zone) an edition goes out, unless they chose one
    send_at: str = "07:00"
    # the day weekly editions go out, unless the subscriber chose one
    weekly_day: Weekday = "monday"
    # when to collect: "HH:MM Zone"; by default 30 minutes after arXiv's 20:00 Eastern
    # announcement, and a few times a day for Hugging Face's upvotes
    collect_at: tuple[str, ...] = ("20:30 America/New_York", "06:00 UTC", "12:00 UTC", "18:00 UTC")
    # how often `run` looks for editions that are due (minutes)
    tick_minutes: int = Field(default=5, ge=1, le=60)

    @field_validator("send_at")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("collect_at")
    @classmethod
    def _zoned_clocks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            clock, _, zone = entry.strip().partition(" ")
            parse_clock(clock)
            try:
                ZoneInfo(zone.strip() or "UTC")
            except Exception:
                raise ValueError(
                    f"{entry!r}: expected HH:MM and an IANA time zone, e.g. 20:30 America/New_York"
                ) from None
        return value

    def send_time(self) -> time:
        return parse_clock(self.send_at)

    def weekly_index(self) -> int:
        return WEEKDAYS.index(self.weekly_day)

    def collect_times(self) -> list[tuple[time, ZoneInfo]]:
        out = []
        for entry in self.collect_at:
            clock, _, zone = entry.strip().partition(" ")
            out.append((parse_clock(clock), ZoneInfo(zone.strip() or "UTC")))
        return out
