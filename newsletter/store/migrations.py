"""Schema versions, applied in order, each in its own transaction, recorded when done.

A database made by any earlier version upgrades in place on open. Steps are append-only:
when ``schema.py`` changes, add a step that moves an existing database to the new shape
(and freeze step 1 as the tables it created then).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select

from newsletter.store import schema

Step = Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    schema.metadata.create_all(conn)


MIGRATIONS: list[tuple[int, str, Step]] = [
    (1, "initial schema", _initial),
]

LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    rows = conn.execute(select(schema.schema_migrations.c.version)).scalars().all()
    return max(rows, default=0)


def migrate(conn: Connection) -> list[int]:
    """Apply every step newer than the database; returns the versions applied."""
    applied: list[int] = []
    version = current_version(conn)
    for number, name, step in MIGRATIONS:
        if number <= version:
            continue
        step(conn)
        if number == 1:
            schema.schema_migrations.create(conn, checkfirst=True)
        conn.execute(
            schema.schema_migrations.insert().values(
                version=number, name=name, applied_at=datetime.now(UTC).isoformat()
            )
        )
        applied.append(number)
    return applied
