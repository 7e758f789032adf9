"""List bombing through the sign-up form (bench/signup_abuse.py, on the real app, mailer and
SMTP server): 100 sign-ups for one address and 1,000 from one client, each in a minute."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from signup_abuse import run


def test_floods_send_one_email_per_address_and_429_past_the_ip_limit() -> None:
    result = run(same_address=100, one_ip=1000)
    one, many = result["same_address_many_ips"], result["many_addresses_one_ip"]
    print(f"\none address x100 from 100 IPs: {one}\n1,000 addresses from one IP: {many}")
    # the same page for every sign-up, but only the first one mails the address
    assert one == {
        "requests": 100,
        "answered_200": 100,
        "answered_429": 0,
        "other": 0,
        "confirmation_emails": 1,
    }
    # the per-IP limit (5 a window by default) answers the rest with 429
    per_ip = result["limits"]["signups_per_ip"]
    assert many == {
        "requests": 1000,
        "answered_200": per_ip,
        "answered_429": 1000 - per_ip,
        "other": 0,
        "confirmation_emails": per_ip,
    }
