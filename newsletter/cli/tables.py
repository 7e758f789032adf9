"""Tables a person reads. Every cell is plain ``Text``: feed titles and addresses are data,
never Rich markup (a title holding ``[/bold]`` must print as it is, not crash or style)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from rich.text import Text

from newsletter.cli.context import out
from newsletter.collect import CollectRow
from newsletter.models import Digest, DigestItem, RunReport, StoredPaper, Subscriber

Cell = str | Text


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Cell]], numeric: Sequence[str] = ()
) -> None:
    table = Table(title=Text(title))
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left")
    for row in rows:
        table.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
    out.print(table)


def collect_table(rows: Sequence[CollectRow]) -> None:
    numbers = ("requests", "parsed", "new", "updated", "skipped", "seconds")

    def note(row: CollectRow) -> Text:
        if row.outcome.error:
            return Text(row.outcome.error, style="red")
        return Text("; ".join(row.outcome.warnings), style="yellow")

    print_table(
        "Sources",
        ("source", "kind", "status", *numbers, "warnings / error"),
        (
            (
                r.outcome.name,
                r.outcome.kind,
                r.status,
                str(r.outcome.requests),
                str(len(r.outcome.papers)),
                str(r.counts.new),
                str(r.counts.updated),
                str(r.outcome.skipped + r.counts.skipped),
                f"{r.outcome.seconds:.2f}",
                note(r),
            )
            for r in rows
        ),
        numbers,
    )


def report_table(report: RunReport, title: str) -> None:
    """The rows kept (every one on a small list, problems on a big one), then the totals."""
    if report.rows:
        print_table(
            f"{title} · {report.edition_date.isoformat()}",
            ("subscriber", "papers", "status", "detail"),
            (
                (str(r["subscriber"]), str(r["papers"]), str(r["status"]), str(r["detail"]))
                for r in report.rows
            ),
        )
    if report.rows_omitted:
        out.print(Text(f"({report.rows_omitted} more rows not shown; the counts cover all)"))
    totals = [
        ("sent", str(report.sent)),
        ("failed", str(report.failed)),
        ("bounced", str(report.bounced)),
        ("uncertain", str(report.uncertain)),
        ("pending", str(report.pending)),
        ("nothing new", str(report.skipped_empty)),
        ("already done", str(report.already_done)),
        ("seconds", f"{report.seconds:.2f}"),
        ("msgs/s", f"{report.rate:.1f}"),
    ]
    print_table("Totals", ("", "count"), totals, numeric=("count",))
    if report.stopped:
        out.print(Text("stopped by a signal: the rest is pending for the next run"))


def report_json(report: RunReport) -> dict[str, object]:
    return {
        "edition": report.edition_date.isoformat(),
        "dry_run": report.dry_run,
        "sent": report.sent,
        "failed": report.failed,
        "bounced": report.bounced,
        "uncertain": report.uncertain,
        "pending": report.pending,
        "skipped_empty": report.skipped_empty,
        "already_done": report.already_done,
        "seconds": round(report.seconds, 3),
        "msgs_per_second": round(report.rate, 1),
        "stopped": report.stopped,
        "deliveries": report.rows,
        "deliveries_omitted": report.rows_omitted,
    }


def digest_table(digest: Digest, explain: bool = False) -> None:
    columns = ["#", "score", "id", "title", "reasons"]
    if explain:
        columns[2:2] = ["relevance", "trending", "recency", "topic"]

    def row(n: int, item: DigestItem) -> list[str]:
        cells = [
            str(n),
            f"{item.score:.3f}",
            item.paper.id,
            item.paper.title,
            "; ".join(item.reasons),
        ]
        if explain:
            parts = dict(item.parts)
            cells[2:2] = [
                f"{parts.get('relevance', 0):.3f}",
                f"{parts.get('trending', 0):.3f}",
                f"{parts.get('recency', 0):.3f}",
                item.topic_id or "",
            ]
        return cells

    print_table(
        f"{digest.subscriber.email} · {len(digest.items)} paper(s)",
        columns,
        (row(n, i) for n, i in enumerate(digest.items, start=1)),
    )


def papers_table(papers: Sequence[StoredPaper]) -> None:
    print_table(
        f"{len(papers)} paper(s)",
        ("id", "title", "sources", "upvotes", "stars", "first seen"),
        (
            (
                p.id,
                p.title[:80],
                ", ".join(p.sources),
                str(p.signals.upvotes or ""),
                str(p.signals.stars or ""),
                p.first_seen.strftime("%Y-%m-%d %H:%M"),
            )
            for p in papers
        ),
        ("upvotes", "stars"),
    )


def subscribers_table(subs: Sequence[Subscriber]) -> None:
    print_table(
        f"{len(subs)} subscriber(s)",
        ("email", "name", "status", "topics", "keywords", "frequency"),
        (
            (
                s.email,
                s.name,
                s.status.value + (", paused" if s.paused else ""),
                ", ".join(s.topics),
                ", ".join(s.keywords),
                s.frequency,
            )
            for s in subs
        ),
    )
