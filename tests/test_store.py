"""The store on real SQLite files: migrations, merging, the ledger's claim."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import astuple
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from conftest import NOW, Databases
from newsletter.models import DeliveryStatus, Paper, Signals, Subscriber, SubscriberStatus
from newsletter.store import Store
from newsletter.store import schema as t
from newsletter.store.migrations import LATEST


@pytest.fixture
def store(each_backend: Databases) -> Iterator[Store]:
    """A fresh store on each backend: SQLite, and PostgreSQL when the tests have one."""
    s = Store.open(each_backend.new())
    yield s
    s.close()


def _paper(**kw: object) -> Paper:
    base: dict[str, object] = {
        "id": "2611.00001",
        "title": "A paper",
        "source": "arxiv",
        "abstract": "short",
        "version": 1,
        "authors": ("A",),
    }
    base.update(kw)
    return Paper(**base)  # type: ignore[arg-type]


def test_open_creates_every_table_and_records_the_version(tmp_path: Path) -> None:
    path = tmp_path / "new" / "x.db"
    store = Store.open(f"sqlite:///{path}")
    insp = inspect(store.engine)
    assert set(t.metadata.tables) <= set(insp.get_table_names())
    for name, table in t.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys())
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("select max(version) from schema_migrations").fetchone()[0] == LATEST
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    again = Store.open(f"sqlite:///{path}")  # reopening applies nothing twice
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from schema_migrations").fetchone()[0] == LATEST
    again.close()


def test_merge_is_idempotent_and_one_row_per_paper(store: Store) -> None:
    rss = _paper(abstract="the long arXiv abstract of this paper", categories=("cs.CL",))
    hf = _paper(
        source="hf",
        abstract="short",
        signals=Signals(upvotes=10, comments=2),
        summary="AI summary",
        keywords=("llm",),
    )
    assert astuple(store.merge_papers([rss], NOW)) == (1, 0, 0)
    assert astuple(store.merge_papers([hf], NOW)) == (0, 1, 0)
    assert astuple(store.merge_papers([rss], NOW)) == (0, 0, 0)
    assert astuple(store.merge_papers([hf], NOW)) == (0, 0, 0)
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.abstract == "the long arXiv abstract of this paper"
    assert paper.summary == "AI summary" and paper.sources == ("arxiv", "hf")
    assert paper.signals == Signals(upvotes=10, stars=None, comments=2)
    assert store.counts()["signals"] == 1


def test_signal_history_keeps_each_new_reading(store: Store) -> None:
    store.merge_papers([_paper(source="hf", signals=Signals(upvotes=10))], NOW)
    store.merge_papers([_paper(source="hf", signals=Signals(upvotes=25))], NOW + timedelta(days=1))
    assert store.counts()["signals"] == 2
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.signals.upvotes == 25


def test_replace_updates_the_paper_and_keeps_first_seen(store: Store) -> None:
    store.merge_papers([_paper()], NOW)
    later = NOW + timedelta(days=3)
    counts = store.merge_papers(
        [_paper(version=2, abstract="v2", title="A paper, revised", announce_type="replace")], later
    )
    assert astuple(counts) == (0, 1, 0)
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.version == 2 and paper.title == "A paper, revised"
    assert paper.first_seen == NOW  # not a new candidate
    assert store.papers_since(later - timedelta(hours=1)) == []


def _one_delivery(store: Store) -> tuple[int, dict[str, object]]:
    """One active subscriber planned into today's edition: (edition id, their ledger row)."""
    store.upsert_subscriber(Subscriber(id=0, email="a@example.org"), NOW)
    sub = store.subscriber(email="a@example.org")
    assert sub is not None
    edition = store.edition(NOW.date(), NOW)
    store.plan_deliveries(edition, [sub.id], NOW)
    [row] = store.deliveries(edition)
    return edition, row


def test_claim_is_atomic_and_sent_records_papers(store: Store) -> None:
    store.upsert_subscriber(Subscriber(id=0, email="a@example.org"), NOW)
    sub = store.subscriber(email="a@example.org")
    assert sub is not None
    edition = store.edition(NOW.date(), NOW)
    assert store.edition(NOW.date(), NOW) == edition
    store.plan_deliveries(edition, [sub.id], NOW)
    store.plan_deliveries(edition, [sub.id], NOW)
    [row] = store.deliveries(edition)
    assert row["status"] == "pending"
    assert store.claim(row["id"], "<m@x>", ["p1", "p2"], NOW, 5)
    assert not store.claim(row["id"], "<m@x>", ["p1", "p2"], NOW, 5)  # already sending
    store.mark_sent(row["id"], "250 ok", NOW, sub.id, edition, ["p1", "p2"])
    [row] = store.deliveries(edition)
    assert row["status"] == "sent" and row["attempts"] == 1 and row["message_id"] == "<m@x>"
    assert store.sent_paper_ids([sub.id], ["p1", "p2", "p3"]) == {sub.id: {"p1", "p2"}}


def test_interrupted_sending_rows_become_uncertain_and_keep_message_id(store: Store) -> None:
    edition, row = _one_delivery(store)
    store.claim(row["id"], "<first@x>", [], NOW, 5)
    assert store.recover_interrupted(edition, NOW, exclusive=True) == 1
    [row] = store.deliveries(edition)
    assert row["status"] == DeliveryStatus.UNCERTAIN
    assert store.claim(row["id"], "<second@x>", [], NOW, 5)
    [row] = store.deliveries(edition)
    assert row["message_id"] == "<first@x>"  # a resend carries the same Message-ID
    # interrupted again: the row stays uncertain and is not sent a third time
    assert store.recover_interrupted(edition, NOW, exclusive=True) == 1
    assert not store.claim(row["id"], "<third@x>", [], NOW, 5)


def test_release_restores_the_previous_state(store: Store) -> None:
    edition, row = _one_delivery(store)
    store.claim(row["id"], "<m@x>", [], NOW, 5)
    store.recover_interrupted(edition, NOW, exclusive=True)
    assert store.claim(row["id"], "<m@x>", [], NOW, 5)
    store.release(row["id"], DeliveryStatus.UNCERTAIN, NOW)
    [row] = store.deliveries(edition)
    assert (row["status"], row["attempts"], row["ambiguous"]) == ("uncertain", 1, 1)


def test_claim_refuses_a_subscriber_who_left_and_rows_over_the_cap(store: Store) -> None:
    for email in ("a@example.org", "b@example.org"):
        store.upsert_subscriber(Subscriber(id=0, email=email), NOW)
    a, b = store.subscriber(email="a@example.org"), store.subscriber(email="b@example.org")
    assert a is not None and b is not None
    edition = store.edition(NOW.date(), NOW)
    store.plan_deliveries(edition, [a.id, b.id], NOW)
    row_a, row_b = store.deliveries(edition)
    store.set_subscriber_status("a@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    assert not store.claim(row_a["id"], "<m@x>", [], NOW, 5)
    assert not store.claim(row_b["id"], "<m@x>", [], NOW, 0)  # attempts cap reached


def test_suppressed_subscriber_is_never_brought_back(store: Store) -> None:
    sub = Subscriber(id=0, email="a@example.org", topics=("llm",))
    assert store.upsert_subscriber(sub, NOW) == "added"
    assert store.upsert_subscriber(sub, NOW) == "unchanged"
    assert store.set_subscriber_status("a@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
    assert store.upsert_subscriber(sub, NOW) == "suppressed"
    found = store.subscriber(email="a@example.org")
    assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED


def test_snapshot_is_a_copy_the_file_never_sees(store: Store, tmp_path: Path) -> None:
    store.merge_papers([_paper()], NOW)
    copy = store.snapshot()
    copy.merge_papers([_paper(id="2611.00002")], NOW)
    assert copy.counts()["papers"] == 2
    assert store.counts()["papers"] == 1
    copy.close()


def test_replace_of_an_unknown_paper_is_not_news(store: Store) -> None:
    counts = store.merge_papers([_paper(version=3, announce_type="replace-cross")], NOW)
    assert astuple(counts) == (0, 0, 1)
    assert store.counts()["papers"] == 0


def test_same_paper_twice_in_one_batch_is_one_row(store: Store) -> None:
    counts = store.merge_papers(
        [_paper(abstract="short"), _paper(abstract="a longer abstract")], NOW
    )
    assert astuple(counts) == (1, 0, 0)
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.abstract == "a longer abstract"


def test_partial_reading_keeps_the_fields_it_lacks(store: Store) -> None:
    store.merge_papers([_paper(source="hf", signals=Signals(upvotes=120, stars=5))], NOW)
    store.merge_papers([_paper(source="hf", signals=Signals(stars=6))], NOW + timedelta(hours=1))
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.signals == Signals(upvotes=120, stars=6, comments=None)


def test_unversioned_copy_does_not_bring_back_old_text(store: Store) -> None:
    store.merge_papers([_paper(version=2, abstract="v2 text")], NOW)
    store.merge_papers(
        [_paper(source="hf", version=None, abstract="a much longer v1 abstract")], NOW
    )
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.abstract == "v2 text" and paper.version == 2


def test_a_version_1_database_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store.open(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:  # take it back to the shape release 1 made
        conn.execute("DROP TABLE source_state")
        conn.execute("DROP TABLE paper_embeddings")
        conn.execute("DROP TABLE suppressions")
        conn.execute("DROP TABLE confirmations")
        conn.execute("DROP TABLE rate_events")
        for column in ("doi", "comment", "journal_ref", "thumbnail_url", "organization"):
            conn.execute(f"ALTER TABLE papers DROP COLUMN {column}")
        conn.execute("ALTER TABLE deliveries DROP COLUMN ambiguous")
        conn.execute("DROP INDEX ix_deliveries_sent_at")
        conn.execute("DROP INDEX ix_deliveries_subscriber")
        conn.execute("ALTER TABLE deliveries DROP COLUMN lease_until")
        conn.execute("ALTER TABLE deliveries DROP COLUMN lease_owner")
        conn.execute("ALTER TABLE subscribers DROP COLUMN authors")
        conn.execute("ALTER TABLE subscribers DROP COLUMN exclude")
        conn.execute("ALTER TABLE subscribers DROP COLUMN paused_at")
        conn.execute("ALTER TABLE subscribers DROP COLUMN send_hour")
        conn.execute("ALTER TABLE subscribers DROP COLUMN send_weekday")
        conn.execute("ALTER TABLE subscribers DROP COLUMN last_edition")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")
        conn.execute(
            "INSERT INTO papers (id, title, abstract, authors, categories, keywords, "
            "first_seen_at, updated_at) VALUES ('2611.00001', 'Kept', '', '[]', '[]', "
            "'[]', ?, ?)",
            (NOW.isoformat(), NOW.isoformat()),
        )
    store = Store.open(f"sqlite:///{path}")
    insp = inspect(store.engine)
    for name, table in t.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys()), name
    [paper] = store.papers_since(NOW - timedelta(days=1))
    assert paper.title == "Kept" and paper.doi is None
    store.close()
    with sqlite3.connect(path) as conn:
        assert [
            v for (v,) in conn.execute("select version from schema_migrations order by 1")
        ] == list(range(1, LATEST + 1))


def test_without_the_lock_only_expired_leases_are_recovered(store: Store) -> None:
    edition, row = _one_delivery(store)
    lease = NOW + timedelta(minutes=10)
    assert store.claim(row["id"], "<m@x>", [], NOW, 5, lease)
    # another process is mid-transaction on it: not an orphan yet
    assert store.recover_interrupted(edition, NOW, exclusive=False) == 0
    assert store.deliveries(edition)[0]["status"] == "sending"
    assert store.recover_interrupted(edition, lease + timedelta(seconds=1), exclusive=False) == 1
    assert store.deliveries(edition)[0]["status"] == "uncertain"


def test_the_lock_holder_never_takes_a_live_workers_row(store: Store) -> None:
    """A `send` holding this host's lock recovers rows of dead processes at once, but a
    worker still sending (here: a live process; or any process on another host) keeps its
    row until its lease ends."""
    import socket
    import subprocess
    import sys

    from sqlalchemy import text

    edition, row = _one_delivery(store)
    lease = NOW + timedelta(minutes=10)
    assert store.claim(row["id"], "<m@x>", [], NOW, 5, lease)
    host = socket.gethostname()[:80]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for owner, taken in (
        (f"{host}:{os.getppid()}", 0),  # alive on this host: a worker mid-send
        (f"another-host:{os.getpid()}", 0),  # on another host: only its lease frees it
        (f"{host}:{dead}", 1),  # its process is gone: interrupted
    ):
        with store.engine.begin() as conn:
            conn.execute(
                text("update deliveries set status = 'sending', lease_owner = :o"), {"o": owner}
            )
        assert store.recover_interrupted(edition, NOW, exclusive=True) == taken, owner
    assert store.deliveries(edition)[0]["status"] == "uncertain"


def test_hard_bounces_suppress_at_the_threshold(store: Store) -> None:
    _edition, row = _one_delivery(store)
    sub_id = int(row["subscriber_id"])  # type: ignore[call-overload]
    store.claim(row["id"], "<m@x>", [], NOW, 5)
    assert not store.mark_bounced(row["id"], sub_id, "550 5.1.1 no", NOW, threshold=2)
    assert store.subscriber(id=sub_id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    later = store.edition((NOW + timedelta(days=1)).date(), NOW)
    store.plan_deliveries(later, [sub_id], NOW)
    [row2] = store.deliveries(later)
    store.claim(row2["id"], "<n@x>", [], NOW, 5)
    assert store.mark_bounced(row2["id"], sub_id, "550 5.1.1 no", NOW, threshold=2)
    assert store.subscriber(id=sub_id).status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]
