"""Tables a person reads: the collect report and the edition report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from newsletter.cli.context import out
from newsletter.models import RunReport


def collect_table(rows: Sequence[Any]) -> None:
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


def report_table(report: RunReport, title: str) -> None:
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
