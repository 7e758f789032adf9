"""Moving a whole installation between databases: table by table, in the schema's order,
through SQLAlchemy Core, so any backend can be the source or the target (SQLite to
PostgreSQL, or PostgreSQL to an in-memory SQLite for a dry run).

An export file is JSON lines: a header (format, schema version, row counts), then one
object per row. Bytes (embeddings) are base64. Importing needs an empty database at the
same schema version, and checks every count afterwards: nothing is lost or left half-done.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, LargeBinary, Table, func, select, text
from sqlalchemy.exc import IntegrityError

from newsletter.errors import InputError, StoreError
from newsletter.store import schema as t
from newsletter.store.migrations import LATEST, current_version

FORMAT = "newsletter-export"
CHUNK = 2000
# what an export carries: everything but the migration log (the target records its own)
TABLES = [tb for tb in t.metadata.sorted_tables if tb.name != "schema_migrations"]
Progress = Callable[[str, int], None]


def _rows(conn: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    order = [c for c in table.primary_key.columns] or list(table.columns)
    result = conn.execution_options(yield_per=CHUNK).execute(select(table).order_by(*order))
    for part in result.mappings().partitions(CHUNK):
        yield [dict(r) for r in part]


def counts(source: Engine | Connection) -> dict[str, int]:
    """Rows per table (what an export and an import are checked against)."""
    if isinstance(source, Engine):
        with source.connect() as conn:
            return counts(conn)
    return {
        tb.name: int(source.execute(select(func.count()).select_from(tb)).scalar_one())
        for tb in TABLES
    }


def _snapshot(conn: Connection) -> Connection:
    """One consistent view for the whole read (PostgreSQL: repeatable read; SQLite's read
    transaction already is one)."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _require_empty(engine: Engine) -> None:
    found = {name: n for name, n in counts(engine).items() if n}
    if found:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
        raise InputError(
            f"the target database is not empty ({listed})",
            hint="import into a new, empty database; nothing was written",
        )


def _serial(tb: Table) -> str | None:
    """The table's integer id column, when it has one the database numbers."""
    pk = list(tb.primary_key.columns)
    if len(pk) == 1 and pk[0].autoincrement is not False and pk[0].type.python_type is int:
        return str(pk[0].name)
    return None


def high_water(conn: Connection) -> dict[str, int]:
    """Per table, the highest id ever handed out, deleted rows included: subscriber ids are
    in the links of emails already sent, so a moved installation must never reuse one."""
    marks: dict[str, int] = {}
    for tb in TABLES:
        col = _serial(tb)
        if col is None:
            continue
        top = conn.execute(text(f"SELECT max({col}) FROM {tb.name}")).scalar() or 0
        if conn.dialect.name == "postgresql":
            seq = conn.execute(
                text(f"SELECT pg_get_serial_sequence('{tb.name}', '{col}')")
            ).scalar()
            if seq:
                last = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
                top = max(top, int(last[0]) if last[1] else 0)
        elif conn.dialect.name == "sqlite":
            known = conn.execute(
                text("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
            ).scalar()
            if known:
                seq = conn.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": tb.name}
                ).scalar()
                top = max(top, int(seq or 0))
        marks[tb.name] = int(top)
    return marks


def _fix_sequences(conn: Connection, marks: dict[str, int]) -> None:
    """After rows arrive with their ids, the next id starts past every id ever used."""
    here = high_water(conn)
    for tb in TABLES:
        col = _serial(tb)
        if col is None:
            continue
        top = max(marks.get(tb.name, 0), here.get(tb.name, 0))
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{tb.name}', '{col}'), {top + 1}, false)"
                )
            )
        elif conn.dialect.name == "sqlite" and tb.dialect_options["sqlite"].get("autoincrement"):
            conn.execute(text("DELETE FROM sqlite_sequence WHERE name = :n"), {"n": tb.name})
            conn.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:n, :s)"),
                {"n": tb.name, "s": top},
            )


def copy_database(src: Engine, dst: Engine, progress: Progress | None = None) -> dict[str, int]:
    """Copy every row from ``src`` into the empty, migrated ``dst``; returns the counts."""
    _require_empty(dst)
    with src.connect() as raw, dst.begin() as d:
        s = _snapshot(raw)
        version = current_version(s)
        if version != LATEST:
            raise StoreError(f"the source database is at schema version {version}, not {LATEST}")
        want = counts(s)
        marks = high_water(s)
        for tb in TABLES:
            for chunk in _rows(s, tb):
                d.execute(tb.insert(), chunk)
                if progress:
                    progress(tb.name, len(chunk))
        _fix_sequences(d, marks)
        return _checked(want, d)


def _checked(want: dict[str, int], dst: Connection) -> dict[str, int]:
    """Inside the writing transaction: a mismatch raises, and nothing is committed."""
    got = counts(dst)
    if want != got:
        diff = {k: (want.get(k), got.get(k)) for k in want if want.get(k) != got.get(k)}
        raise StoreError(f"the copy does not match the source: {diff}")
    return got


def _encode(row: dict[str, Any], binary: set[str]) -> dict[str, Any]:
    return {
        k: base64.b64encode(v).decode() if k in binary and v is not None else v
        for k, v in row.items()
    }


def export_database(
    engine: Engine, out: IO[str], progress: Progress | None = None
) -> dict[str, int]:
    """Write the whole database as JSON lines; returns the row counts it holds."""
    with engine.connect() as raw:
        conn = _snapshot(raw)
        version = current_version(conn)
        held = counts(conn)
        header = {
            "format": FORMAT,
            "schema_version": version,
            "counts": held,
            "high_water": high_water(conn),
        }
        out.write(json.dumps(header) + "\n")
        for tb in TABLES:
            binary = {c.name for c in tb.columns if isinstance(c.type, LargeBinary)}
            for chunk in _rows(conn, tb):
                for row in chunk:
                    out.write(json.dumps({"t": tb.name, "r": _encode(row, binary)}) + "\n")
                if progress:
                    progress(tb.name, len(chunk))
    return held


def _records(lines: Iterable[str], path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for number, line in enumerate(lines, start=2):
        try:
            item = json.loads(line)
            yield number, str(item["t"]), dict(item["r"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}:{number}: not a row of a newsletter export") from None


def import_database(engine: Engine, path: Path, progress: Progress | None = None) -> dict[str, int]:
    """Load an export into the empty, migrated database ``engine``; all or nothing."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            header = json.loads(handle.readline())
            assert header["format"] == FORMAT
        except (ValueError, KeyError, TypeError, AssertionError):
            raise InputError(
                f"{path}:1: not a newsletter export", hint="make one with `newsletter db export`"
            ) from None
        if header["schema_version"] != LATEST:
            raise InputError(
                f"{path}: exported at schema version {header['schema_version']}, this release "
                f"is at {LATEST}",
                hint="upgrade the source first (`newsletter db upgrade`), then export again",
            )
        _require_empty(engine)
        tables = {tb.name: tb for tb in TABLES}
        binary = {
            tb.name: {c.name for c in tb.columns if isinstance(c.type, LargeBinary)}
            for tb in TABLES
        }
        try:
            return _load(engine, handle, path, header, tables, binary, progress)
        except IntegrityError as exc:
            raise InputError(
                f"{path}: rows that do not fit together ({exc.orig.__class__.__name__}); "
                "nothing was imported",
                hint="export again from a database nobody is writing to",
            ) from None


def _load(
    engine: Engine,
    handle: IO[str],
    path: Path,
    header: dict[str, Any],
    tables: dict[str, Table],
    binary: dict[str, set[str]],
    progress: Progress | None,
) -> dict[str, int]:
    """The rows, in one transaction that commits only when every count matches."""
    with engine.begin() as conn:
        batch: list[dict[str, Any]] = []
        current: str | None = None
        for number, name, row in _records(handle, path):
            if name not in tables:
                raise InputError(f"{path}:{number}: unknown table {name!r}")
            if name != current and batch and current is not None:
                conn.execute(tables[current].insert(), batch)
                if progress:
                    progress(current, len(batch))
                batch = []
            current = name
            for col in binary[name]:
                if row.get(col) is not None:
                    row[col] = base64.b64decode(row[col])
            batch.append(row)
            if len(batch) >= CHUNK:
                conn.execute(tables[name].insert(), batch)
                if progress:
                    progress(name, len(batch))
                batch = []
        if batch and current is not None:
            conn.execute(tables[current].insert(), batch)
            if progress:
                progress(current, len(batch))
        marks = {k: int(v) for k, v in dict(header.get("high_water", {})).items()}
        _fix_sequences(conn, marks)
        return _checked(dict(header["counts"]), conn)
