"""What each source's last collect left: validators, items hash, status, last error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from newsletter.sources import SourceState
from newsletter.store import schema as t
from newsletter.store.base import StoreBase, dt, iso


class SourceStateStore(StoreBase):
    def source_state(self, name: str) -> SourceState | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(t.source_state).where(t.source_state.c.source == name))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return SourceState(
            etag=row["etag"],
            last_modified=row["last_modified"],
            items_hash=row["items_hash"],
            announcement_at=dt(row["announcement_at"]),
        )

    def save_source_state(
        self, name: str, state: SourceState | None, status: str, now: datetime
    ) -> None:
        """After a successful collect: the new validators and what was seen."""
        values: dict[str, Any] = {
            "last_collect_at": now.isoformat(),
            "last_status": status,
            "last_error": None,
            "last_success_at": now.isoformat(),
        }
        if state is not None:
            values |= {
                "etag": state.etag,
                "last_modified": state.last_modified,
                "items_hash": state.items_hash,
                "announcement_at": iso(state.announcement_at),
            }
        self._upsert(name, values)

    def source_failed(self, name: str, error: str, now: datetime) -> None:
        """After a failed collect: the error, and the previous state kept as it was."""
        self._upsert(
            name,
            {
                "last_collect_at": now.isoformat(),
                "last_status": "error",
                "last_error": error[:1000],
            },
        )

    def _upsert(self, name: str, values: dict[str, Any]) -> None:
        ss = t.source_state
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(ss).values(source=name))
            conn.execute(ss.update().where(ss.c.source == name).values(**values))

    def source_states(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    select(t.source_state).order_by(t.source_state.c.source)
                ).mappings()
            ]
