"""`newsletter db`: upgrade the schema, and move an installation between databases."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import Progress, TaskID

from newsletter.cli.context import current, err, out
from newsletter.cli.tables import print_table
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.migrations import LATEST, current_version
from newsletter.store.transfer import export_database, import_database


@click.group("db")
def db() -> None:
    """The database: upgrade, export, import (e.g. SQLite to PostgreSQL)."""


@db.command("upgrade")
def db_upgrade() -> int:
    """Bring the database to this release's schema (each step in one transaction)."""
    config = current().config
    url = config.database_url()
    store = Store.open(url)  # opening migrates; report what it found and did
    try:
        with store.engine.connect() as conn:
            version = current_version(conn)
    finally:
        store.close()
    out.print(f"database at schema version {version} (this release: {LATEST})")
    return 0


def _progress() -> tuple[Progress, TaskID]:
    progress = Progress(console=err, transient=True)
    return progress, progress.add_task("rows", total=None)


@db.command("export")
@click.argument("file", type=click.Path(path_type=Path))
def db_export(file: Path) -> int:
    """Write every table to FILE (JSON lines; - for standard output)."""
    config = current().config
    store = Store.open(config.database_url())
    progress, task = _progress()
    try:
        with progress:
            if str(file) == "-":
                held = export_database(store.engine, sys.stdout)
            else:
                try:
                    handle = file.open("w", encoding="utf-8")
                except OSError as exc:
                    raise InputError(f"cannot write {file}: {exc.strerror}") from None
                with handle:
                    held = export_database(
                        store.engine,
                        handle,
                        lambda _, n: progress.advance(task, n),
                    )
    finally:
        store.close()
    if str(file) != "-":
        _counts_table(f"Exported to {file}", held)
    return 0


@db.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def db_import(file: Path) -> int:
    """Load an export into this config's database, which must be new and empty."""
    config = current().config
    store = Store.open(config.database_url())
    progress, task = _progress()
    try:
        with progress:
            got = import_database(
                store.engine,
                file,
                lambda _, n: progress.advance(task, n),
            )
    finally:
        store.close()
    _counts_table(f"Imported {file} (every table's count checked)", got)
    return 0


def _counts_table(title: str, counts: dict[str, int]) -> None:
    print_table(title, ("table", "rows"), ((k, str(v)) for k, v in counts.items()), ("rows",))
