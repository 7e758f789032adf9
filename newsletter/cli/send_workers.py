"""`send --workers N` and `send --worker`: the CLI side of several send processes on one
edition (the library side is ``newsletter.workers``)."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from dataclasses import replace

from rich.text import Text

from newsletter.cli.context import (
    State,
    collect_now,
    encoder_for,
    err,
    open_store,
    signing,
)
from newsletter.cli.tables import collect_table, report_json, report_table
from newsletter.engine import DeliverySettings
from newsletter.runlock import RunLock
from newsletter.sending import SendContext, SendInterrupted, dkim_signer, smtp_connect


def send_with_workers(
    state: State,
    workers: int | None,
    as_worker: bool,
    no_collect: bool,
    as_json: bool,
    share: int = 1,
) -> int:
    """``--workers N``: this process holds the host's lock, collects and plans; N worker
    processes (``--worker``) share the sending, each within 1/N of the rate caps."""
    from newsletter.workers import plan_edition, run_workers, totals, work_edition

    config = state.config
    signer, secret = signing(config)
    with ExitStack() as stack:
        if not as_worker:
            stack.enter_context(RunLock(config.lock_path()))
        store = stack.enter_context(open_store(config))
        ctx = SendContext(
            config,
            store,
            smtp_connect(config),
            signer,
            secret,
            state.now,
            encoder=encoder_for(config) if as_worker else None,  # the parent ranks nothing
            dkim=dkim_signer(config),
            handle_signals=True,
            exclusive=False,
            settings=shared_caps(config.delivery.settings(), share),
        )
        if as_worker:  # planning is idempotent: a worker started alone plans its edition too
            plan_edition(ctx)
            try:
                report = asyncio.run(work_edition(ctx))
            except SendInterrupted as stop:
                err.print(Text(f"error: {stop.cause}"))
                report = stop.report
            print(json.dumps(report_json(report)))
            return report.exit_code
        if not no_collect:
            rows = collect_now(config, state.now, store)
            if not as_json:
                collect_table(rows)
        edition_id, report = plan_edition(ctx)
        assert workers is not None
        results = run_workers(workers, state.config_path.resolve(), state.now)
        report = totals(store, edition_id, report, results)
    if as_json:
        print(json.dumps(report_json(report) | {"workers": results}))
    else:
        report_table(report, f"Edition ({workers} workers)")
    failed = [r for r in results if r.get("exit") not in (0, 3)]
    return 1 if failed else report.exit_code


def shared_caps(settings: DeliverySettings, share: int) -> DeliverySettings:
    """One worker of ``share``: its part of the relay's per-second and per-hour caps."""
    if share <= 1:
        return settings
    return replace(
        settings,
        max_per_second=settings.max_per_second / share,
        max_per_hour=max(1, settings.max_per_hour // share) if settings.max_per_hour else 0,
    )
