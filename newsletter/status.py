"""What ``newsletter status`` reports: the state of the list in one value (plain data, so
the CLI can print it as tables or as JSON)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from newsletter.config import Config
from newsletter.models import SubscriberStatus
from newsletter.schedule import SlotRule, When
from newsletter.store import Store


def gather_status(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    """Sources, editions, deliveries, subscribers and what is scheduled next, as of ``now``."""
    names = [s.name for s in config.sources]
    states = {r["source"]: r for r in store.source_states()}
    sources = []
    for name in names:
        row = states.get(name, {})
        last = row.get("last_collect_at")
        sources.append(
            {
                "source": name,
                "last_collect": last,
                "status": row.get("last_status") or "never collected",
                "found": store.items_seen(name, last) if last else 0,
                "last_success": row.get("last_success_at"),
                "error": row.get("last_error"),
            }
        )
    s = config.schedule
    rule = SlotRule(s.send_time(), s.weekly_index())
    upcoming: list[datetime] = []
    overdue = 0
    nexts: dict[When, datetime] = {}
    slots: dict[When, date] = {}
    for page in store.schedule_pages():
        for _, when, last, joined in page:
            if when not in nexts:
                nexts[when] = rule.next_send(when, now)
            upcoming.append(nexts[when])
            if rule.owed(when, last, joined, now, slots) is not None:
                overdue += 1  # their slot has passed and `run` has not planned it yet
    upcoming.sort()
    after = now + timedelta(seconds=1)
    collects = sorted(
        fire.astimezone(now.tzinfo)
        for at, zone in s.collect_times()
        if (
            fire := CronTrigger(hour=at.hour, minute=at.minute, timezone=zone).get_next_fire_time(
                None, after
            )
        )
    )
    subscribers = store.subscriber_counts()
    suppressed = sum(
        subscribers.get(k, 0)
        for k in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, "forgotten")
    )
    return {
        "now": now.isoformat(),
        "sources": sources,
        "editions": store.recent_editions(3),
        "deliveries": store.delivery_totals(),
        "retries_waiting": store.retries_waiting(),
        "subscribers": subscribers,
        "suppressed": suppressed,
        "next": {
            "edition": upcoming[0].isoformat() if upcoming else None,
            "messages_in_24h": sum(1 for t in upcoming if t <= now + timedelta(days=1)),
            "owed_now": overdue,
            "send_check_minutes": s.tick_minutes,
            "collects": [c.isoformat() for c in collects],
        },
    }
