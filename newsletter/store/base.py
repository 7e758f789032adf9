"""What every part of the store shares: the engine, portable upserts, value codecs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite


class StoreBase:
    """Holds the engine; the table groups (papers, subscribers, ledger) extend it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _insert_ignore(self, table: Any) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING in the engine's dialect."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """Slices small enough for an IN (...) list on every backend."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
