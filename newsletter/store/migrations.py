"""Schema versions: a new database is created at the latest shape; an older one upgrades.

A fresh database gets ``schema.metadata`` as it is now and every version recorded (as
Alembic's "create_all, then stamp head"). A database made by an earlier release runs each
missing step in order, in one transaction, each recorded when done. Steps are append-only
and spell out their DDL, so they keep meaning what they meant when they were written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select, text

from newsletter.store import schema

Step = Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    raise AssertionError("version 1 is created from the metadata, never as a step")


def _paper_details_and_source_state(conn: Connection) -> None:
    for column, kind in (
        ("doi", "VARCHAR(300)"),
        ("comment", "TEXT"),
        ("journal_ref", "TEXT"),
        ("thumbnail_url", "TEXT"),
        ("organization", "VARCHAR(200)"),
    ):
        conn.execute(text(f"ALTER TABLE papers ADD COLUMN {column} {kind}"))
    conn.execute(text("ALTER TABLE deliveries ADD COLUMN ambiguous INTEGER NOT NULL DEFAULT 0"))
    conn.execute(
        text(
            "CREATE TABLE paper_embeddings (paper_id VARCHAR(300) NOT NULL, model VARCHAR(100) "
            f"NOT NULL, vector {'BYTEA' if conn.dialect.name == 'postgresql' else 'BLOB'} "
            "NOT NULL, PRIMARY KEY (paper_id, model))"
        )
    )
    conn.execute(
        text(
            "CREATE TABLE suppressions (email_hash VARCHAR(64) NOT NULL PRIMARY KEY, "
            "reason VARCHAR(40) NOT NULL, created_at VARCHAR(40) NOT NULL)"
        )
    )
    for column in ("authors", "exclude"):
        conn.execute(
            text(f"ALTER TABLE subscribers ADD COLUMN {column} TEXT NOT NULL DEFAULT '[]'")
        )
    conn.execute(
        text(
            "CREATE TABLE source_state (source VARCHAR(200) NOT NULL PRIMARY KEY, etag TEXT, "
            "last_modified TEXT, items_hash VARCHAR(64), announcement_at VARCHAR(40), "
            "last_collect_at VARCHAR(40), last_status VARCHAR(100), last_error TEXT, "
            "last_success_at VARCHAR(40))"
        )
    )


def _delivery_leases(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE deliveries ADD COLUMN lease_until VARCHAR(40)"))
    conn.execute(text("CREATE INDEX ix_deliveries_sent_at ON deliveries (sent_at)"))
    conn.execute(
        text("CREATE INDEX ix_deliveries_subscriber ON deliveries (subscriber_id, status)")
    )


def _confirmations_and_rate_events(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TABLE confirmations (nonce VARCHAR(64) NOT NULL PRIMARY KEY, "
            "subscriber_id INTEGER NOT NULL REFERENCES subscribers (id), "
            "created_at VARCHAR(40) NOT NULL, used_at VARCHAR(40))"
        )
    )
    conn.execute(
        text(
            "CREATE INDEX ix_confirmations_subscriber ON confirmations (subscriber_id, created_at)"
        )
    )
    conn.execute(
        text(
            "CREATE TABLE rate_events (id INTEGER NOT NULL PRIMARY KEY, bucket VARCHAR(40) "
            "NOT NULL, key VARCHAR(200) NOT NULL, at VARCHAR(40) NOT NULL)"
        )
    )
    conn.execute(text("CREATE INDEX ix_rate_events_bucket_key ON rate_events (bucket, key, at)"))


def _subscriber_pause(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE subscribers ADD COLUMN paused_at VARCHAR(40)"))


def _subscriber_send_time(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE subscribers ADD COLUMN send_hour INTEGER"))
    conn.execute(text("ALTER TABLE subscribers ADD COLUMN send_weekday INTEGER"))
    conn.execute(text("ALTER TABLE subscribers ADD COLUMN last_edition VARCHAR(10)"))
    conn.execute(
        text(
            "UPDATE subscribers SET last_edition = (SELECT max(e.edition_date) FROM deliveries d "
            "JOIN editions e ON e.id = d.edition_id WHERE d.subscriber_id = subscribers.id)"
        )
    )


def _lease_owner(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE deliveries ADD COLUMN lease_owner VARCHAR(100)"))


MIGRATIONS: list[tuple[int, str, Step]] = [
    (1, "initial schema", _initial),
    (
        2,
        "paper details (doi, comment, journal ref, thumbnail, organization); source state",
        _paper_details_and_source_state,
    ),
    (3, "delivery leases; indexes for the hourly cap and bounce counts", _delivery_leases),
    (4, "confirmation emails (single-use) and rate-limit events", _confirmations_and_rate_events),
    (5, "subscribers can pause their digest", _subscriber_pause),
    (
        6,
        "subscribers choose the hour and weekday of their edition; each one's last edition",
        _subscriber_send_time,
    ),
    (7, "who holds each claim (host and process), for workers on several hosts", _lease_owner),
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
    fresh = version == 0 and not inspect(conn).has_table("papers")
    if fresh:
        schema.metadata.create_all(conn)
    for number, name, step in MIGRATIONS:
        if number <= version:
            continue
        if not fresh:
            step(conn)
        conn.execute(
            schema.schema_migrations.insert().values(
                version=number, name=name, applied_at=datetime.now(UTC).isoformat()
            )
        )
        applied.append(number)
    return applied
