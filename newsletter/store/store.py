"""The store: every read and write of the database goes through ``Store``.

SQLAlchemy Core so the same code runs on SQLite (the default, WAL) and, later, PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from newsletter.errors import StoreError
from newsletter.store import schema as t
from newsletter.store.ledger import LedgerStore
from newsletter.store.migrations import migrate
from newsletter.store.papers import PaperStore
from newsletter.store.schedule import ScheduleStore
from newsletter.store.signup import SignupStore
from newsletter.store.source_state import SourceStateStore
from newsletter.store.subscribers import SubscriberStore


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA secure_delete=ON")  # forgotten data is overwritten, not left in free pages
    cur.close()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # a server database: check a pooled connection before use (long-lived serve and run
    # outlive server restarts and idle timeouts)
    return create_engine(url, pool_pre_ping=True)


class Store(PaperStore, SubscriberStore, LedgerStore, SourceStateStore, SignupStore, ScheduleStore):
    """One database; open with ``Store.open(url)``, which migrates it to the latest schema."""

    @classmethod
    def open(cls, url: str) -> Store:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url.removeprefix("sqlite:///"))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the database folder {path.parent}: {exc.strerror}"
                ) from None
        try:
            store = cls(_make_engine(url))
            with store.engine.begin() as conn:
                migrate(conn)
        except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:
            raise StoreError(
                f"cannot use database {url!r}: {exc}",
                hint="use a file path or an SQLAlchemy URL such as sqlite:///path",
            ) from None
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {url}: {exc.__class__.__name__}: "
                f"{str(exc.orig if hasattr(exc, 'orig') else exc)[:200]}"
            ) from None
        return store

    def snapshot(self) -> Store:
        """An in-memory copy to run a dry run against: the real database is never written."""
        copy = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        if self.engine.dialect.name != "sqlite":  # PostgreSQL: row by row into SQLite
            from newsletter.store.transfer import copy_database

            with copy.begin() as conn:
                migrate(conn)
            copy_database(self.engine, copy)
            return Store(copy)
        with self.engine.connect() as src_conn, copy.connect() as dst_conn:
            src = src_conn.connection.dbapi_connection
            dst = dst_conn.connection.dbapi_connection
            assert isinstance(src, sqlite3.Connection) and isinstance(dst, sqlite3.Connection)
            src.backup(dst)
        return Store(copy)

    def close(self) -> None:
        if self._hot is not None:
            self._hot.close()
        self.engine.dispose()

    def counts(self) -> dict[str, int]:
        """Row counts, for status output and tests."""
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in (
                    ("papers", t.papers),
                    ("subscribers", t.subscribers),
                    ("deliveries", t.deliveries),
                    ("sent_papers", t.sent_papers),
                    ("signals", t.signals),
                )
            }
