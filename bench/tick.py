"""What one `newsletter run` tick costs when nothing is due, and `newsletter status`, on a
big list.

    .venv/bin/python bench/tick.py [--subscribers 100000]

Creates N active subscribers spread over a few time zones and hours in a fresh SQLite file,
plans everyone's edition once (the first tick after their slot), then times a tick that
finds nothing due (what `run` does every `tick_minutes`) and a `status` report.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from newsletter.demo import demo_config
from newsletter.schedule import SlotRule
from newsletter.sending import _plan_slots
from newsletter.status import gather_status
from newsletter.store import Store
from newsletter.store import schema as t

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Los_Angeles")
NOW = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp) / "tick.db", 25)
        store = Store.open(config.database_url())
        joined = (NOW - timedelta(days=30)).isoformat()
        rows = [
            {
                "email": f"s{i}@example.org",
                "name": "",
                "status": "active",
                "topics": "[]",
                "keywords": "[]",
                "authors": "[]",
                "exclude": "[]",
                "frequency": "weekly" if i % 5 == 0 else "daily",
                "timezone": rng.choice(ZONES),
                "send_hour": rng.choice((None, 6, 7, 8, 18)),
                "created_at": joined,
                "updated_at": joined,
                "confirmed_at": joined,
            }
            for i in range(args.subscribers)
        ]
        with store.engine.begin() as conn:
            conn.execute(insert(t.subscribers), rows)
        rule = SlotRule(config.schedule.send_time(), config.schedule.weekly_index())
        started = time.perf_counter()
        _plan_slots(store, rule, NOW)
        first = time.perf_counter() - started
        planned = sum(store.delivery_totals().values())
        started = time.perf_counter()
        _plan_slots(store, rule, NOW + timedelta(minutes=5))
        idle = time.perf_counter() - started
        started = time.perf_counter()
        gather_status(config, store, NOW)
        status = time.perf_counter() - started
        store.close()
    print(f"subscribers                {args.subscribers:,}")
    print(f"first tick (plans {planned:,})  {first:.2f} s")
    print(f"tick with nothing due      {idle:.2f} s")
    print(f"status                     {status:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
