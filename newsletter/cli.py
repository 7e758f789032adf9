"""The command line: the composition root. Parse, build the real edges, call one function, print.

The clock is read once here; errors from the library are printed as one line and mapped
to exit codes (0 ok, 1 user/config error, 2 usage, 3 partial failure).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from newsletter.config import Config, load_config
from newsletter.deliver import OutboxSender, SMTPSender
from newsletter.errors import InputError, NewsletterError
from newsletter.models import RunReport, Subscriber, SubscriberStatus
from newsletter.pipeline import (
    SendInterrupted,
    collect,
    digests,
    preview,
    send_edition,
    source_specs,
)
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.subscriptions import Signer, normalise_email, read_roster

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class State:
    config_path: Path
    verbose: bool
    now: datetime
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _state() -> State:
    state = click.get_current_context().find_root().obj
    assert isinstance(state, State)
    return state


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(path_type=Path),
    envvar="NEWSLETTER_CONFIG",
    help="Config file [default: ./config.toml, or $NEWSLETTER_CONFIG].",
)
@click.option("--verbose", "-v", is_flag=True, help="Say more.")
@click.option("--now", hidden=True, help="Run as of this ISO date-time (for tests and replays).")
@click.version_option(package_name="newsletter")
@click.pass_context
def app(ctx: click.Context, config: Path | None, verbose: bool, now: str | None) -> None:
    """A self-hosted, personalised email digest of trending research papers."""
    clock = datetime.now(UTC)
    if now:
        try:
            clock = datetime.fromisoformat(now)
        except ValueError:
            raise click.BadParameter(
                f"{now!r} is not an ISO date-time", param_hint="--now"
            ) from None
        if clock.tzinfo is None:
            clock = clock.replace(tzinfo=UTC)
    ctx.obj = State(config or Path("config.toml"), verbose, clock)


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    store = Store.open(config.database_url())
    try:
        yield store
    finally:
        store.close()


def _print_json_lines(rows: Sequence[Any]) -> None:
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, default=str))


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

    result = run_demo(out_dir, _state().now)
    _collect_table(result.collected)
    _report_table(result.report, "Demo edition")
    out.print(
        f"The local SMTP server accepted {result.received} message(s). "
        f"Open {result.index} to read them."
    )
    return result.report.exit_code


@app.command("collect")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source.")
def collect_cmd(as_json: bool) -> int:
    """Fetch every configured source, merge, store (idempotent)."""
    state = _state()
    rows = _collect(state.config, state.now)
    if as_json:
        _print_json_lines([r.as_dict() for r in rows])
    else:
        _collect_table(rows)
    return 1 if rows and all(r.outcome.error for r in rows) else 0


def _collect(config: Config, now: datetime, store: Store | None = None) -> list[Any]:
    fetcher = HttpFetcher()
    try:
        if store is not None:
            return collect(store, source_specs(config), fetcher, now)
        with _store(config) as s:
            return collect(s, source_specs(config), fetcher, now)
    finally:
        fetcher.close()


def _collect_table(rows: Sequence[Any]) -> None:
    table = Table(title="Sources")
    for col in ("source", "kind", "parsed", "new", "updated", "skipped", "status", "seconds"):
        table.add_column(
            col,
            justify="right"
            if col in ("parsed", "new", "updated", "skipped", "seconds")
            else "left",
        )
    for row in rows:
        d = row.as_dict()
        status = (
            f"[red]error: {d['error']}[/red]"
            if d["error"]
            else (f"[yellow]{'; '.join(d['warnings'])}[/yellow]" if d["warnings"] else "ok")
        )
        table.add_row(
            d["source"],
            d["kind"],
            str(d["parsed"]),
            str(d["new"]),
            str(d["updated"]),
            str(d["skipped"]),
            status,
            f"{d['seconds']:.2f}",
        )
    out.print(table)


@app.command()
@click.option("--subscriber", help="Only this subscriber (email).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber.")
def rank(subscriber: str | None, as_json: bool) -> int:
    """Show what each subscriber's digest would hold, with scores and reasons."""
    state = _state()
    email = normalise_email(subscriber) if subscriber else None
    with _store(state.config) as store:
        if email and store.subscriber(email=email) is None:
            raise InputError(f"no subscriber {email}")
        result = digests(state.config, store, state.now, email)
    if as_json:
        _print_json_lines(
            [
                {
                    "subscriber": d.subscriber.email,
                    "items": [
                        {
                            "id": i.paper.id,
                            "title": i.paper.title,
                            "url": i.paper.url,
                            "score": i.score,
                            "reasons": list(i.reasons),
                        }
                        for i in d.items
                    ],
                }
                for d in result
            ]
        )
        return 0
    for d in result:
        table = Table(title=f"{d.subscriber.email} · {len(d.items)} paper(s)")
        for col in ("#", "score", "id", "title", "reasons"):
            table.add_column(col)
        for n, item in enumerate(d.items, start=1):
            table.add_row(
                str(n),
                f"{item.score:.2f}",
                item.paper.id,
                item.paper.title,
                "; ".join(item.reasons),
            )
        out.print(table)
    return 0


def _signing(config: Config) -> tuple[Signer, str]:
    secret = config.secret()
    return Signer([secret]), secret


@app.command("preview")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write into."
)
@click.option("--subscriber", help="Only this subscriber (email).")
def preview_cmd(out_dir: Path, subscriber: str | None) -> int:
    """Render digests to .html/.txt/.eml files and an index.html, without sending."""
    from newsletter.gallery import write_gallery

    state = _state()
    signer, secret = _signing(state.config)
    email = normalise_email(subscriber) if subscriber else None
    with _store(state.config) as store:
        composed = preview(state.config, store, signer, secret, state.now, email)
    index = write_gallery(
        out_dir,
        [(c.digest.subscriber.email, c.data) for c in composed],
        f"{state.config.newsletter.name}: preview",
    )
    out.print(f"Wrote {len(composed)} preview(s); open {index}")
    return 0


@app.command()
@click.option("--dry-run", is_flag=True, help="Write the exact messages to --out; send nothing.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Folder for --dry-run.")
@click.option("--no-collect", is_flag=True, help="Send from what is stored; do not collect first.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
def send(dry_run: bool, out_dir: Path | None, no_collect: bool, as_json: bool) -> int:
    """Collect, rank, render and deliver today's edition (resumable, never twice)."""
    state = _state()
    config = state.config
    if dry_run and out_dir is None:
        raise click.BadParameter("--dry-run needs --out DIR", param_hint="--out")
    signer, secret = _signing(config)
    with _store(config) as real:
        store = real.snapshot() if dry_run else real
        try:
            if not no_collect:
                rows = _collect(config, state.now, store)
                if not as_json:
                    _collect_table(rows)
            sender: Any
            if dry_run:
                assert out_dir is not None
                sender = OutboxSender(out_dir)
            else:
                sender = SMTPSender(
                    config.smtp.host,
                    config.smtp.port,
                    security=config.smtp.security,
                    username=config.smtp.username,
                    password=config.smtp_password(),
                    timeout=config.smtp.timeout,
                )
            report = _run_send(config, store, sender, signer, secret, state.now, dry_run, as_json)
        finally:
            if store is not real:
                store.close()
    if as_json:
        print(
            json.dumps(
                {
                    "edition": report.edition_date.isoformat(),
                    "dry_run": report.dry_run,
                    "sent": report.sent,
                    "failed": report.failed,
                    "bounced": report.bounced,
                    "skipped_empty": report.skipped_empty,
                    "already_done": report.already_done,
                    "pending": report.pending,
                    "deliveries": report.rows,
                }
            )
        )
    else:
        _report_table(report, "Dry run (nothing sent)" if dry_run else "Edition")
        if dry_run:
            out.print(f"Messages written to {out_dir}")
    return report.exit_code


def _run_send(
    config: Config,
    store: Store,
    sender: Any,
    signer: Signer,
    secret: str,
    now: datetime,
    dry_run: bool,
    quiet: bool,
) -> RunReport:
    with Progress(console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task("sending", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            return asyncio.run(
                send_edition(
                    config, store, sender, signer, secret, now, dry_run=dry_run, progress=tick
                )
            )
        except SendInterrupted as stop:
            err.print(f"error: {stop.cause}")
            return stop.report


def _report_table(report: RunReport, title: str) -> None:
    table = Table(title=f"{title} · {report.edition_date.isoformat()}")
    for col in ("subscriber", "papers", "status", "detail"):
        table.add_column(col)
    for row in report.rows:
        table.add_row(
            str(row["subscriber"]), str(row["papers"]), str(row["status"]), str(row["detail"])
        )
    out.print(table)
    out.print(
        f"sent {report.sent} · failed {report.failed} · bounced {report.bounced} · "
        f"nothing new {report.skipped_empty} · already done {report.already_done} · "
        f"pending {report.pending}"
    )


@app.command()
@click.option("--since", help="First seen on or after this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per paper.")
def papers(since: str | None, as_json: bool) -> int:
    """List stored papers with their sources and latest signals."""
    state = _state()
    start = datetime(1970, 1, 1, tzinfo=UTC)
    if since:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not a date", param_hint="--since") from None
    with _store(state.config) as store:
        found = store.papers_since(start)
    if as_json:
        _print_json_lines(
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
    table = Table(title=f"{len(found)} paper(s)")
    for col in ("id", "title", "sources", "upvotes", "stars", "first seen"):
        table.add_column(col)
    for p in found:
        table.add_row(
            p.id,
            p.title[:80],
            ", ".join(p.sources),
            str(p.signals.upvotes or ""),
            str(p.signals.stars or ""),
            p.first_seen.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
    return 0


# ---- subscribers -------------------------------------------------------------------------


@app.group("subscribers")
def subs_app() -> None:
    """Manage subscribers: add, list, remove, import."""


@subs_app.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--topic", multiple=True, help="Topic id from the config (repeatable).")
@click.option("--keyword", multiple=True, help="Own keyword (repeatable).")
@click.option("--confirmed", is_flag=True, help="Active at once (the operator vouches).")
def subscribers_add(
    email: str, name: str, topic: tuple[str, ...], keyword: tuple[str, ...], confirmed: bool
) -> int:
    """Add a subscriber (pending unless --confirmed)."""
    state = _state()
    known = {t.id for t in state.config.topics}
    unknown = [t for t in topic or [] if t not in known]
    if unknown:
        raise InputError(
            f"unknown topic {', '.join(unknown)}",
            hint=f"topics in the config: {', '.join(sorted(known)) or 'none'}",
        )
    sub = Subscriber(
        id=0,
        email=normalise_email(email),
        name=name.strip(),
        status=SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
        topics=tuple(topic or ()),
        keywords=tuple(keyword or ()),
    )
    with _store(state.config) as store:
        outcome = store.upsert_subscriber(sub, state.now)
    if outcome == "suppressed":
        raise InputError(f"{sub.email} unsubscribed or bounced earlier and stays suppressed")
    out.print(f"{sub.email}: {outcome} ({sub.status.value})")
    return 0


@subs_app.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber.")
def subscribers_list(as_json: bool) -> int:
    """List subscribers."""
    state = _state()
    with _store(state.config) as store:
        subs = store.subscribers()
    if as_json:
        _print_json_lines(
            [
                {
                    "email": s.email,
                    "name": s.name,
                    "status": s.status.value,
                    "topics": list(s.topics),
                    "keywords": list(s.keywords),
                    "frequency": s.frequency,
                }
                for s in subs
            ]
        )
        return 0
    table = Table(title=f"{len(subs)} subscriber(s)")
    for col in ("email", "name", "status", "topics", "keywords", "frequency"):
        table.add_column(col)
    for s in subs:
        table.add_row(
            s.email, s.name, s.status.value, ", ".join(s.topics), ", ".join(s.keywords), s.frequency
        )
    out.print(table)
    return 0


@subs_app.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> int:
    """Unsubscribe an address (kept as suppressed so no import brings it back)."""
    state = _state()
    address = normalise_email(email)
    with _store(state.config) as store:
        if not store.set_subscriber_status(address, SubscriberStatus.UNSUBSCRIBED, state.now):
            raise InputError(f"no subscriber {address}")
    out.print(f"{address}: unsubscribed")
    return 0


@subs_app.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--pending", is_flag=True, help="Import as pending (they must confirm).")
def subscribers_import(file: Path, pending: bool) -> int:
    """Import a CSV (email,name,topics,keywords) or TOML ([[subscribers]]) roster."""
    state = _state()
    roster = read_roster(file, pending=pending, topic_ids={t.id for t in state.config.topics})
    counts = {"added": 0, "updated": 0, "unchanged": 0, "suppressed": 0}
    with _store(state.config) as store:
        for row in roster.rows:
            counts[store.upsert_subscriber(row.subscriber, state.now)] += 1
    for problem in roster.invalid:
        err.print(f"skipped {problem}")
    out.print(
        f"added {counts['added']} · updated {counts['updated']} · unchanged "
        f"{counts['unchanged']} · skipped (suppressed) {counts['suppressed']} · "
        f"invalid {len(roster.invalid)}"
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
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def main() -> None:
    os.environ.setdefault("COLUMNS", os.environ.get("COLUMNS", "120"))
    sys.exit(run())
