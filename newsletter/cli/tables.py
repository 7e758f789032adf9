"""Tables a person reads: the collect report and the edition report."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from newsletter.cli.context import out
from newsletter.collect import CollectRow
from newsletter.models import RunReport


def collect_table(rows: Sequence[CollectRow]) -> None:
    table = Table(title="Sources")
    numbers = ("requests", "parsed", "new", "updated", "skipped", "seconds")
    for col in ("source", "kind", "status", *numbers, "warnings / error"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for row in rows:
        d = row.as_dict()
        note = (
            f"[red]{escape(str(d['error']))}[/red]"
            if d["error"]
            else f"[yellow]{escape('; '.join(row.outcome.warnings))}[/yellow]"
        )
        table.add_row(
            str(d["source"]),
            str(d["kind"]),
            row.status,
            str(d["requests"]),
            str(d["parsed"]),
            str(d["new"]),
            str(d["updated"]),
            str(d["skipped"]),
            f"{row.outcome.seconds:.2f}",
            note,
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
