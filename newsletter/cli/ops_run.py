"""`newsletter run`: the long-lived scheduler (collect on a schedule, send each edition at
its subscriber's hour), holding the run lock for its whole life."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click

from newsletter.cli.context import current, encoder_for, open_store, out, signing
from newsletter.runlock import RunLock
from newsletter.scheduler import Runner, run_forever
from newsletter.sending import dkim_signer, smtp_connect


@click.command("run")
def run_cmd() -> int:
    """Run the scheduler until SIGTERM: collect at [schedule] collect_at, and send each
    subscriber's edition at their hour in their time zone (daily, or weekly on their day).

    A second `run` or `send` on the same database exits at once (exit 1). SIGTERM finishes
    the message in flight, leaves the ledger consistent, and exits 0.
    """
    state = current()
    config = state.config
    signer, secret = signing(config)
    # --now (tests, replays) shifts the clock; it still runs forward in real time
    offset = state.now - datetime.now(UTC)

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    with RunLock(config.lock_path()), open_store(config) as store:
        runner = Runner(
            config,
            store,
            smtp_connect(config),
            signer,
            secret,
            clock,
            dkim=dkim_signer(config),
            encoder=encoder_for(config),
        )
        s = config.schedule
        out.print(
            f"Running: sends due editions every {s.tick_minutes} min (default {s.send_at} "
            f"local, weekly on {s.weekly_day}); collects at {', '.join(s.collect_at)}. "
            "Stop with SIGTERM or Ctrl-C."
        )
        asyncio.run(run_forever(runner, config))
    out.print("Stopped; the ledger is consistent.")
    return 0
