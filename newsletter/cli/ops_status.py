"""`newsletter status`: what the list is doing, as tables or JSON."""

from __future__ import annotations

import json

import click

from newsletter.cli.context import current, open_store
from newsletter.cli.tables import print_table
from newsletter.status import gather_status


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Everything as one JSON object.")
def status(as_json: bool) -> int:
    """Last collect per source, last and next editions, deliveries by state, retries
    waiting, suppressed addresses and the next scheduled runs."""
    state = current()
    with open_store(state.config) as store:
        report = gather_status(state.config, store, state.now)
    if as_json:
        print(json.dumps(report, default=str))
        return 0
    print_table(
        "Sources",
        ("source", "last collect", "status", "found", "error"),
        (
            (
                r["source"],
                r["last_collect"] or "never",
                r["status"],
                str(r["found"]),
                (r["error"] or "")[:80],
            )
            for r in report["sources"]
        ),
        numeric=("found",),
    )
    print_table(
        "Recent editions",
        ("edition", "deliveries by state", "last sent"),
        (
            (
                e["date"],
                ", ".join(f"{k} {v}" for k, v in sorted(e["counts"].items())) or "none",
                e["last_sent"] or "",
            )
            for e in report["editions"]
        ),
    )
    subs = report["subscribers"]
    nxt = report["next"]
    print_table(
        "List",
        ("what", "value"),
        [
            (
                "deliveries",
                ", ".join(f"{k} {v}" for k, v in sorted(report["deliveries"].items())) or "none",
            ),
            ("retries waiting", str(report["retries_waiting"])),
            (
                "subscribers",
                ", ".join(f"{k} {v}" for k, v in sorted(subs.items()) if v) or "none",
            ),
            ("suppressed (never mailed)", str(report["suppressed"])),
            ("next edition due", nxt["edition"] or "none (no active subscribers)"),
            ("messages due in 24 h", str(nxt["messages_in_24h"])),
            ("owed now (slot passed, not yet planned)", str(nxt["owed_now"])),
            ("send check (run)", f"every {nxt['send_check_minutes']} min"),
            ("next collects (run)", ", ".join(nxt["collects"])),
        ],
    )
    return 0
