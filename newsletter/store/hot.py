"""The per-message ledger writes, run on one raw DBAPI connection.

A send commits twice per message (the claim before MAIL FROM, the outcome after the reply).
Through SQLAlchemy's execution path each statement costs about 0.2 ms on top of SQLite's own
0.1 ms, a fifth of a message's whole budget. Here the same Core statements are compiled
once for the engine's dialect and executed on a pooled DBAPI connection, so the SQL and its
portability stay SQLAlchemy's while the overhead goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement

from newsletter.errors import StoreError

Step = tuple[ClauseElement, Mapping[str, Any] | Sequence[Mapping[str, Any]]]


class HotPath:
    """Compiled statements on a connection of their own; ``run`` is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._compiled: dict[int, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _prepare(self, stmt: ClauseElement) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        found = self._compiled.get(id(stmt))
        if found is None:
            compiled = stmt.compile(dialect=self.engine.dialect)
            positions = getattr(compiled, "positiontup", None) or ()
            order = tuple(positions) if self.engine.dialect.positional else None
            found = (str(compiled), order, dict(compiled.params))
            self._compiled[id(stmt)] = found
        return found

    @staticmethod
    def _args(
        params: Mapping[str, Any], order: tuple[str, ...] | None, defaults: dict[str, Any]
    ) -> Any:
        merged = {**defaults, **params}
        return tuple(merged[k] for k in order) if order is not None else merged

    def run(self, steps: Sequence[Step]) -> list[int]:
        """Execute the steps (a mapping: once; a list of mappings: executemany) and commit;
        returns each step's row count."""
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        conn = self._conn
        counts: list[int] = []
        try:
            cursor = conn.cursor()
            for stmt, params in steps:
                sql, order, defaults = self._prepare(stmt)
                if isinstance(params, Mapping):
                    cursor.execute(sql, self._args(params, order, defaults))
                else:
                    cursor.executemany(sql, [self._args(p, order, defaults) for p in params])
                counts.append(cursor.rowcount)
            cursor.close()
            conn.commit()
        except Exception as exc:
            conn.rollback()
            raise StoreError(f"ledger write failed: {exc.__class__.__name__}: {exc}") from exc
        return counts

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
