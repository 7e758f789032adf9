"""`newsletter subscribers ...`: add, list, remove, import."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from newsletter.cli.context import current, err, open_store, out, print_json_lines
from newsletter.cli.tables import print_table, subscribers_table
from newsletter.errors import InputError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.subscriptions import (
    ROSTER_FIELDS,
    normalise_email,
    read_roster,
    subscriber_record,
)


@click.group("subscribers")
def subscribers() -> None:
    """Manage subscribers: add, list, remove, import."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--topic", multiple=True, help="Topic id from the config (repeatable).")
@click.option("--keyword", multiple=True, help="Own keyword (repeatable).")
@click.option("--author", multiple=True, help="Author to follow (repeatable).")
@click.option("--exclude", multiple=True, help="Keyword that rules a paper out (repeatable).")
@click.option("--confirmed", is_flag=True, help="Active at once (the operator vouches).")
def subscribers_add(
    email: str,
    name: str,
    topic: tuple[str, ...],
    keyword: tuple[str, ...],
    author: tuple[str, ...],
    exclude: tuple[str, ...],
    confirmed: bool,
) -> int:
    """Add a subscriber (pending unless --confirmed)."""
    state = current()
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
        authors=tuple(author),
        exclude=tuple(exclude),
    )
    with open_store(state.config) as store:
        outcome = store.upsert_subscriber(sub, state.now)
    if outcome == "suppressed":
        raise InputError(f"{sub.email} unsubscribed or bounced earlier and stays suppressed")
    out.print(f"{sub.email}: {outcome} ({sub.status.value})")
    return 0


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per subscriber.")
def subscribers_list(as_json: bool) -> int:
    """List subscribers."""
    state = current()
    with open_store(state.config) as store:
        subs = store.subscribers()
    if as_json:
        print_json_lines([subscriber_record(s) for s in subs])
        return 0
    subscribers_table(subs)
    return 0


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> int:
    """Unsubscribe an address (kept as suppressed so no import brings it back)."""
    state = current()
    address = normalise_email(email)
    with open_store(state.config) as store:
        if not store.set_subscriber_status(address, SubscriberStatus.UNSUBSCRIBED, state.now):
            raise InputError(f"no subscriber {address}")
    out.print(f"{address}: unsubscribed")
    return 0


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def subscribers_show(email: str, as_json: bool) -> int:
    """Everything stored about one subscriber."""
    state = current()
    address = normalise_email(email)
    with open_store(state.config) as store:
        sub = store.subscriber(email=address)
    if sub is None:
        raise InputError(f"no subscriber {address}")
    record = subscriber_record(sub)
    if as_json:
        print_json_lines([record])
    else:
        print_table(
            address,
            ("field", "value"),
            ((k, ", ".join(v) if isinstance(v, list) else str(v)) for k, v in record.items()),
        )
    return 0


@subscribers.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV (the import format) or one JSON object per line.",
)
def subscribers_export(fmt: str) -> int:
    """Write every subscriber to standard output, in a form `import` reads back."""
    state = current()
    with open_store(state.config) as store:
        records = [subscriber_record(s) for s in store.subscribers()]
    if fmt == "json":
        print_json_lines(records)
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(ROSTER_FIELDS)
    for r in records:
        writer.writerow(
            [";".join(v) if isinstance(v, list) else v for v in (r[c] for c in ROSTER_FIELDS)]
        )
    return 0


@subscribers.command("forget")
@click.argument("email")
def subscribers_forget(email: str) -> int:
    """Delete all personal data of an address; keep only a hash so it is never mailed again."""
    state = current()
    address = normalise_email(email)
    with open_store(state.config) as store:
        if not store.forget(address, state.now):
            raise InputError(f"no subscriber {address}")
    out.print(f"{address}: forgotten (only a hash of the address is kept, as a suppression)")
    return 0


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--pending", is_flag=True, help="Import as pending (they must confirm).")
def subscribers_import(file: Path, pending: bool) -> int:
    """Import a CSV (email,name,topics,keywords) or TOML ([[subscribers]]) roster."""
    state = current()
    roster = read_roster(file, pending=pending, topic_ids={t.id for t in state.config.topics})
    counts = {"added": 0, "updated": 0, "unchanged": 0, "suppressed": 0}
    with open_store(state.config) as store:
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
