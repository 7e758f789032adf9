"""List bombing through the sign-up form, against the real app: how many emails go out.

    .venv/bin/python bench/signup_abuse.py [--same-address 100] [--one-ip 1000] [--json]

Runs ``newsletter serve``'s app under uvicorn on 127.0.0.1 (behind a pretend proxy: the
client address comes from X-Forwarded-For, as in production), with the real confirmation
mailer and an aiosmtpd server, on the default ``[web]`` limits. Two floods, each within one
minute of the app's clock:

- the same address signed up N times, each from a different client address (the per-address
  rule alone must hold it to one confirmation email a day);
- N sign-ups for N different addresses, all from one client address (the per-IP rule).

Prints the requests, the answers by status, and the confirmation emails the server received.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from newsletter.demo import demo_config
from newsletter.smtp_server import LocalSMTPServer
from newsletter.store import Store
from newsletter.subscriptions import Signer
from newsletter.web import create_app
from newsletter.web.build import build_site

SECRET = "bench-secret-0123456789"
START = datetime(2026, 11, 24, 12, tzinfo=UTC)


class Clock:
    """The app's clock: each request moves it on, so a flood spans one minute."""

    def __init__(self, step: timedelta) -> None:
        self.now, self.step = START, step

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += self.step


def flood(
    client: httpx.Client, clock: Clock, smtp: LocalSMTPServer, requests: list[dict[str, str]]
) -> dict[str, Any]:
    """Send the requests (form + client address); count answers and emails received."""
    before = len(smtp.received)
    statuses: Counter[int] = Counter()
    for req in requests:
        r = client.post(
            "/subscribe",
            data={"email": req["email"], "frequency": "daily"},
            headers={"x-forwarded-for": req["ip"]},
        )
        statuses[r.status_code] += 1
        clock.tick()
    # uvicorn serves one request at a time per connection, background task included: once
    # this answer arrives, every confirmation email of the flood has been sent (or refused)
    client.get("/healthz")
    return {
        "requests": len(requests),
        "answered_200": statuses[200],
        "answered_429": statuses[429],
        "other": sum(v for k, v in statuses.items() if k not in (200, 429)),
        "confirmation_emails": len(smtp.received) - before,
    }


def run(same_address: int, one_ip: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, LocalSMTPServer() as smtp:
        config = demo_config(Path(tmp) / "abuse.db", smtp.port)
        store = Store.open(config.database_url())
        clock = Clock(timedelta(seconds=60 / max(same_address, one_ip, 1)))
        app = create_app(build_site(config, store, Signer([SECRET]), clock))
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="off",
                proxy_headers=True,
                forwarded_allow_ips="127.0.0.1",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)  # readiness, not timing
        port = server.servers[0].sockets[0].getsockname()[1]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False)
        try:
            one = flood(
                client,
                clock,
                smtp,
                [
                    {"email": "victim@example.org", "ip": f"10.1.{i // 250}.{i % 250 + 1}"}
                    for i in range(same_address)
                ],
            )
            clock.now += timedelta(hours=2)  # a fresh window for the second flood
            many = flood(
                client,
                clock,
                smtp,
                [{"email": f"stranger{i}@example.org", "ip": "10.9.9.9"} for i in range(one_ip)],
            )
        finally:
            client.close()
            server.should_exit = True
            thread.join(timeout=10)
            store.close()
        return {
            "limits": config.web.model_dump(),
            "same_address_many_ips": one,
            "many_addresses_one_ip": many,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--same-address", type=int, default=100)
    parser.add_argument("--one-ip", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    result = run(args.same_address, args.one_ip)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    limits = result["limits"]
    print(
        f"limits: {limits['signups_per_ip']} sign-ups per IP per "
        f"{limits['signup_window_seconds']} s, one confirmation email per address per 24 h, "
        f"{limits['confirmations_per_hour']} confirmation emails per hour site-wide"
    )
    print(f"{'flood':32} {'requests':>8} {'200':>5} {'429':>5} {'other':>5} {'emails':>6}")
    for name, key in (
        ("one address, many IPs", "same_address_many_ips"),
        ("many addresses, one IP", "many_addresses_one_ip"),
    ):
        r = result[key]
        print(
            f"{name:32} {r['requests']:>8} {r['answered_200']:>5} {r['answered_429']:>5} "
            f"{r['other']:>5} {r['confirmation_emails']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
