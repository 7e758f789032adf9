"""The tables, as SQLAlchemy Core metadata: the only description of the schema.

Times are ISO-8601 UTC strings, lists are JSON text, so the file reads well in ``sqlite3``.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("applied_at", String(40), nullable=False),
)

papers = Table(
    "papers",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("version", Integer),
    Column("title", Text, nullable=False),
    Column("abstract", Text, nullable=False, default=""),
    Column("authors", Text, nullable=False, default="[]"),
    Column("categories", Text, nullable=False, default="[]"),
    Column("url", Text),
    Column("pdf_url", Text),
    Column("code_url", Text),
    Column("project_url", Text),
    Column("summary", Text),
    Column("keywords", Text, nullable=False, default="[]"),
    Column("published_at", String(40)),
    Column("doi", String(300)),
    Column("comment", Text),
    Column("journal_ref", Text),
    Column("thumbnail_url", Text),
    Column("organization", String(200)),
    Column("first_seen_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Index("ix_papers_first_seen", "first_seen_at"),
)

paper_sources = Table(
    "paper_sources",
    metadata,
    Column("paper_id", String(300), ForeignKey("papers.id"), nullable=False),
    Column("source", String(200), nullable=False),
    Column("announce_type", String(20)),
    Column("first_seen_at", String(40), nullable=False),
    Column("last_seen_at", String(40), nullable=False),
    PrimaryKeyConstraint("paper_id", "source"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("paper_id", String(300), ForeignKey("papers.id"), nullable=False),
    Column("source", String(200), nullable=False),
    Column("seen_at", String(40), nullable=False),
    Column("upvotes", Integer),
    Column("stars", Integer),
    Column("comments", Integer),
    Index("ix_signals_paper", "paper_id", "source", "seen_at"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(20), nullable=False),
    Column("topics", Text, nullable=False, default="[]"),
    Column("keywords", Text, nullable=False, default="[]"),
    Column("authors", Text, nullable=False, default="[]"),
    Column("exclude", Text, nullable=False, default="[]"),
    Column("frequency", String(10), nullable=False, default="daily"),
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("confirmed_at", String(40)),
    Column("unsubscribed_at", String(40)),
    Column("paused_at", String(40)),  # set while the subscriber has paused the digest
    Column("send_hour", Integer),  # local hour of day; NULL: the list's [schedule] send_at
    Column("send_weekday", Integer),  # weekly editions: 0 = Monday; NULL: weekly_day
    Column("last_edition", String(10)),  # the newest edition planned for them (YYYY-MM-DD)
    # ids are in unsubscribe tokens: never reuse one, even after a row is deleted
    sqlite_autoincrement=True,
)

editions = Table(
    "editions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition_date", String(10), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition_id", Integer, ForeignKey("editions.id"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("message_id", String(300)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("ambiguous", Integer, nullable=False, default=0),
    Column("last_reply", Text),
    Column("paper_ids", Text, nullable=False, default="[]"),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("sent_at", String(40)),
    Column("lease_until", String(40)),
    Column("lease_owner", String(100)),  # host:pid of the process that claimed the row
    UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
    Index("ix_deliveries_status", "edition_id", "status"),
    Index("ix_deliveries_sent_at", "sent_at"),
    Index("ix_deliveries_subscriber", "subscriber_id", "status"),
)

sent_papers = Table(
    "sent_papers",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("paper_id", String(300), nullable=False),
    Column("edition_id", Integer, ForeignKey("editions.id"), nullable=False),
    Column("sent_at", String(40), nullable=False),
    PrimaryKeyConstraint("subscriber_id", "paper_id"),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("items_hash", String(64)),
    Column("announcement_at", String(40)),
    Column("last_collect_at", String(40)),
    Column("last_status", String(100)),
    Column("last_error", Text),
    Column("last_success_at", String(40)),
)

paper_embeddings = Table(
    "paper_embeddings",
    metadata,
    Column("paper_id", String(300), nullable=False),
    Column("model", String(100), nullable=False),
    Column("vector", LargeBinary, nullable=False),
    PrimaryKeyConstraint("paper_id", "model"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Double opt-in: one row per confirmation email sent; the token carries the nonce, the row
# makes it single-use and says when the address was last mailed (one a day at most).
confirmations = Table(
    "confirmations",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("used_at", String(40)),
    Index("ix_confirmations_subscriber", "subscriber_id", "created_at"),
)

# Rate limits kept in the database, so any number of web processes share them.
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bucket", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("at", String(40), nullable=False),
    Index("ix_rate_events_bucket_key", "bucket", "key", "at"),
)
