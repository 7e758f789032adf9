"""The command line: the composition root. Parse, build the real edges, call one function, print.

The clock is read once here; errors from the library are printed as one line and mapped
to exit codes (0 ok, 1 user/config error, 2 usage, 3 partial failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress
from rich.text import Text
from sqlalchemy.exc import OperationalError

from newsletter.cli.context import (
    State,
    collect_now,
    current,
    encoder_for,
    err,
    open_store,
    out,
    print_json_lines,
    signing,
)
from newsletter.cli.ops_db import db
from newsletter.cli.ops_doctor import doctor
from newsletter.cli.ops_run import run_cmd
from newsletter.cli.ops_status import status
from newsletter.cli.ops_systemd import systemd
from newsletter.cli.subscribers import subscribers
from newsletter.cli.tables import (
    collect_table,
    digest_table,
    papers_table,
    report_json,
    report_table,
)
from newsletter.deliver import OutboxSender
from newsletter.errors import InputError, NewsletterError
from newsletter.logs import redact, setup_logging
from newsletter.models import RunReport
from newsletter.pipeline import digests, preview
from newsletter.runlock import RunLock
from newsletter.sending import (
    SendContext,
    SendInterrupted,
    dkim_signer,
    send_edition,
    smtp_connect,
)
from newsletter.subscriptions import normalise_email


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(path_type=Path),
    envvar="NEWSLETTER_CONFIG",
    help="Config file [default: ./config.toml, or $NEWSLETTER_CONFIG].",
)
@click.option("--verbose", "-v", count=True, help="Say more (-vv: debug, libraries too).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Logs on stderr: for people, or one JSON object per line (journald, shippers).",
)
@click.option("--now", hidden=True, help="Run as of this ISO date-time (for tests and replays).")
@click.version_option(package_name="newsletter")
@click.pass_context
def app(
    ctx: click.Context, config: Path | None, verbose: int, log_format: str, now: str | None
) -> None:
    """A self-hosted, personalised email digest of trending research papers."""
    clock = datetime.now(UTC)
    if now:
        try:
            clock = datetime.fromisoformat(now)
        except ValueError:
            raise click.BadParameter(
                f"{now!r} is not an ISO date-time", param_hint="--now"
            ) from None
        clock = clock.replace(tzinfo=UTC) if clock.tzinfo is None else clock.astimezone(UTC)
    levels = {0: logging.WARNING, 1: logging.INFO}
    setup_logging(levels.get(verbose, logging.DEBUG), log_format)
    ctx.obj = State(config or Path("config.toml"), verbose > 0, clock)


# ---- pipeline commands -------------------------------------------------------------------


@app.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where to write the messages.",
)
def demo(out_dir: Path) -> int:
    """Whole pipeline on the bundled sample with a local SMTP server; writes out/demo/."""
    from newsletter.demo import run_demo

    result = run_demo(out_dir, current().now)
    collect_table(result.collected)
    report_table(result.report, "Demo edition")
    out.print(
        f"The local SMTP server accepted {result.received} message(s). "
        f"Open {result.index} to read them."
    )
    return result.report.exit_code


@app.command("collect")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 3 also on warnings (an empty or stale arXiv feed, a malformed feed).",
)
def collect_cmd(as_json: bool, strict: bool) -> int:
    """Fetch every configured source, merge, store (idempotent).

    Exit 3 when a source failed (the others are still stored).
    """
    state = current()
    with open_store(state.config) as store:
        rows = collect_now(state.config, state.now, store)
    if as_json:
        print_json_lines([r.as_dict() for r in rows])
    else:
        collect_table(rows)
    failed = any(r.outcome.error for r in rows)
    warned = any(r.outcome.warnings for r in rows)
    return 3 if failed or (strict and warned) else 0


@app.command()
@click.option("--subscriber", help="Only this subscriber (email).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber.")
@click.option("--explain", is_flag=True, help="Show the score parts and the model in use.")
def rank(subscriber: str | None, as_json: bool, explain: bool) -> int:
    """Show what each subscriber's digest would hold, with scores and reasons."""
    state = current()
    email = normalise_email(subscriber) if subscriber else None
    with open_store(state.config) as store:
        if email and store.subscriber(email=email) is None:
            raise InputError(f"no subscriber {email}")
        result, model = digests(state.config, store, state.now, email, encoder_for(state.config))
    if as_json:
        print_json_lines(
            [
                {
                    "subscriber": d.subscriber.email,
                    **({"model": model} if explain else {}),
                    "items": [
                        {
                            "id": i.paper.id,
                            "title": i.paper.title,
                            "url": i.paper.url,
                            "score": i.score,
                            "reasons": list(i.reasons),
                            **({"topic": i.topic_id, "parts": dict(i.parts)} if explain else {}),
                        }
                        for i in d.items
                    ],
                }
                for d in result
            ]
        )
        return 0
    if explain:
        out.print(Text(f"relevance model: {model}"))
    for d in result:
        digest_table(d, explain)
    return 0


@app.command("preview")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write into."
)
@click.option("--subscriber", help="Only this subscriber (email).")
@click.option("--serve", is_flag=True, help="Then serve the folder on 127.0.0.1 until Ctrl-C.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port for --serve (0: any free port).",
)
def preview_cmd(out_dir: Path, subscriber: str | None, serve: bool, port: int) -> int:
    """Render digests to .html/.txt/.eml files and an index.html, without sending."""
    from newsletter.gallery import serve_folder, write_gallery

    state = current()
    signer, secret = signing(state.config)
    email = normalise_email(subscriber) if subscriber else None
    with open_store(state.config) as store:
        composed = preview(
            state.config, store, signer, secret, state.now, email, encoder_for(state.config)
        )
    index = write_gallery(
        out_dir,
        [(c.digest.subscriber.email, c.data) for c in composed],
        f"{state.config.newsletter.name}: preview",
    )
    out.print(f"Wrote {len(composed)} preview(s); open {index}")
    if serve:
        try:
            server, url = serve_folder(out_dir, port)
        except OSError as exc:
            raise InputError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror}") from None
        out.print(f"Serving {out_dir} at {url} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


@app.command()
@click.option("--dry-run", is_flag=True, help="Write the exact messages to --out; send nothing.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Folder for --dry-run.")
@click.option("--no-collect", is_flag=True, help="Send from what is stored; do not collect first.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Send with N worker processes sharing the edition (also across hosts on PostgreSQL).",
)
@click.option("--worker", "as_worker", is_flag=True, hidden=True)
@click.option("--share", type=click.IntRange(1, 64), default=1, hidden=True)
def send(
    dry_run: bool,
    out_dir: Path | None,
    no_collect: bool,
    as_json: bool,
    workers: int | None,
    as_worker: bool,
    share: int,
) -> int:
    """Collect, rank, render and deliver today's edition (resumable, never twice)."""
    state = current()
    config = state.config
    if dry_run and out_dir is None:
        raise click.BadParameter("--dry-run needs --out DIR", param_hint="--out")
    if dry_run and (workers or as_worker):
        raise click.BadParameter("a dry run uses one process", param_hint="--workers")
    if as_worker or workers:
        from newsletter.cli.send_workers import send_with_workers

        return send_with_workers(state, workers, as_worker, no_collect, as_json, share)
    signer, secret = signing(config)
    with ExitStack() as stack:
        if not dry_run:  # a dry run writes nothing, so it may run beside a real send
            stack.enter_context(RunLock(config.lock_path()))
        real = stack.enter_context(open_store(config))
        store = real.snapshot() if dry_run else real
        if store is not real:
            stack.callback(store.close)
        if not no_collect:
            rows = collect_now(config, state.now, store)
            if not as_json:
                collect_table(rows)
        if dry_run:
            assert out_dir is not None
            outbox = OutboxSender(out_dir)
            connect: Any = lambda: outbox  # noqa: E731
        else:
            connect = smtp_connect(config)
        ctx = SendContext(
            config,
            store,
            connect,
            signer,
            secret,
            state.now,
            dry_run=dry_run,
            encoder=encoder_for(config),
            dkim=dkim_signer(config),
            handle_signals=True,
        )
        report = _run_send(ctx, as_json)
    if as_json:
        print(json.dumps(report_json(report)))
    else:
        report_table(report, "Dry run (nothing sent)" if dry_run else "Edition")
        if dry_run:
            out.print(f"Messages written to {out_dir}")
    return report.exit_code


def _run_send(ctx: SendContext, quiet: bool) -> RunReport:
    with Progress(console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task("sending", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        ctx.progress = tick
        try:
            return asyncio.run(send_edition(ctx))
        except SendInterrupted as stop:
            err.print(Text(f"error: {stop.cause}"))
            return stop.report


@app.command()
@click.option("--since", help="First seen on or after this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per paper.")
def papers(since: str | None, as_json: bool) -> int:
    """List stored papers with their sources and latest signals."""
    state = current()
    start = datetime(1970, 1, 1, tzinfo=UTC)
    if since:
        try:
            start = datetime.fromisoformat(since)
            start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not a date", param_hint="--since") from None
    with open_store(state.config) as store:
        found = store.papers_since(start)
    if as_json:
        print_json_lines(
            [
                {
                    "id": p.id,
                    "title": p.title,
                    "url": p.url,
                    "sources": list(p.sources),
                    "signals": {
                        "upvotes": p.signals.upvotes,
                        "stars": p.signals.stars,
                        "comments": p.signals.comments,
                    },
                    "first_seen": p.first_seen.isoformat(),
                }
                for p in found
            ]
        )
        return 0
    papers_table(found)
    return 0


app.add_command(subscribers)
app.add_command(db)
app.add_command(doctor)
app.add_command(run_cmd)
app.add_command(status)
app.add_command(systemd)


@app.command()
@click.option(
    "--from-mail",
    "mail",
    type=click.File("rb"),
    required=True,
    help="The unsubscribe email, as a file or - for standard input.",
)
def unsubscribe(mail: Any) -> int:
    """Handle a mail to the List-Unsubscribe mailto: address (pipe it here from your MTA).

    The subject carries the signed token the header put there; a mail without a valid one
    changes nothing (a From address alone can be forged).
    """
    from email import message_from_bytes
    from email import policy as email_policy

    state = current()
    message = message_from_bytes(mail.read(1_000_000), policy=email_policy.default)
    found = re.search(r"unsubscribe\s+([\w.-]+)", str(message.get("Subject", "")), re.I)
    if not found:
        raise InputError(
            "no unsubscribe token in the subject",
            hint="the List-Unsubscribe mailto: link puts one there",
        )
    signer, _ = signing(state.config)
    sid = signer.read("unsubscribe", found.group(1))
    with open_store(state.config) as store:
        sub = store.subscriber(id=sid)
        if sub is None or not store.unsubscribe_id(sid, state.now):
            raise InputError("this link is invalid or has expired")
    out.print(f"{sub.email}: unsubscribed")
    return 0


@app.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve(host: str, port: int) -> int:
    """Run the web app (sign-up, confirm, preferences, archive, one-click unsubscribe) with
    uvicorn, behind your reverse proxy."""
    import uvicorn

    from newsletter.web import create_app
    from newsletter.web.build import build_site

    state = current()
    config = state.config
    signer, _ = signing(config)
    with open_store(config) as store:
        web = create_app(build_site(config, store, signer))
        out.print(
            f"Serving on http://{host}:{port}; links in emails use {config.newsletter.base_url}"
        )
        uvicorn.run(
            web,
            host=host,
            port=port,
            log_level="warning",
            proxy_headers=True,
            forwarded_allow_ips=config.web.forwarded_allow_ips,
            server_header=False,
        )
    return 0


# ---- entry point -------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by tests in-process)."""
    try:
        result = app.main(
            args=list(argv) if argv is not None else None,
            prog_name="newsletter",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        return 1
    except NewsletterError as exc:
        err.print(f"error: {redact(str(exc))}", markup=False, soft_wrap=True)
        return exc.exit_code
    except OperationalError as exc:  # locked, disk full, read-only: the run stops cleanly
        reason = str(exc.orig).splitlines()[0] if exc.orig else exc.__class__.__name__
        err.print(f"error: database: {reason}", markup=False, soft_wrap=True)
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    os.environ.setdefault("COLUMNS", os.environ.get("COLUMNS", "120"))
    sys.exit(run())
