"""Plain value types that flow through the pipeline.

These are frozen dataclasses rather than pydantic models: pydantic guards the boundaries
(config, feeds, forms); inside, values are built millions of times per edition and must be cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Signals:
    """Trending signals for one paper as one source reported them at one time."""

    upvotes: int | None = None
    stars: int | None = None
    comments: int | None = None

    def is_empty(self) -> bool:
        return self.upvotes is None and self.stars is None and self.comments is None


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as a source reported it; ``id`` is canonical (see ``sources.ids``)."""

    id: str
    title: str
    source: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    summary: str | None = None
    keywords: tuple[str, ...] = ()
    version: int | None = None
    announce_type: str | None = None
    published: datetime | None = None
    signals: Signals = field(default_factory=Signals)
    doi: str | None = None
    comment: str | None = None
    journal_ref: str | None = None
    thumbnail_url: str | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPaper:
    """A paper as the store holds it after merging every source, with its latest signals."""

    id: str
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    url: str | None
    pdf_url: str | None
    code_url: str | None
    project_url: str | None
    summary: str | None
    keywords: tuple[str, ...]
    version: int | None
    published: datetime | None
    first_seen: datetime
    sources: tuple[str, ...]
    signals: Signals
    doi: str | None = None
    comment: str | None = None
    journal_ref: str | None = None
    thumbnail_url: str | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Topic:
    """An operator-defined interest that subscribers pick."""

    id: str
    name: str
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    description: str = ""
    authors: tuple[str, ...] = ()


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One person on the list and what they asked for."""

    id: int
    email: str
    name: str = ""
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    frequency: str = "daily"
    timezone: str = "UTC"
    authors: tuple[str, ...] = ()  # authors to follow
    exclude: tuple[str, ...] = ()  # keywords that rule a paper out
    paused: bool = False  # subscribed, but no editions until resumed
    send_hour: int | None = None  # local hour editions go out (None: the list's default)
    send_weekday: int | None = None  # weekly: 0 = Monday (None: the list's default)


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One ranked pick with the score that placed it and the reasons shown to the reader."""

    paper: StoredPaper
    score: float
    topic_id: str | None
    reasons: tuple[str, ...]
    parts: tuple[tuple[str, float], ...] = ()  # the score's components, for --explain


@dataclass(frozen=True, slots=True)
class Digest:
    """What one subscriber gets in one edition."""

    subscriber: Subscriber
    edition_date: date
    items: tuple[DigestItem, ...]


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A digest turned into the parts of an email; headers are added by ``mail``."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A finished message and its envelope: the recipient list is exactly one subscriber."""

    subscriber_id: int
    mail_from: str
    recipient: str
    message_id: str
    data: bytes
    smtputf8: bool = False  # the envelope needs SMTPUTF8 (an internationalised address)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the server said about one message."""

    ok: bool
    code: int | None = None
    reply: str = ""
    permanent: bool = False
    ambiguous: bool = False  # the connection died after DATA: the server may have it


@dataclass(slots=True)
class RunReport:
    """Counts of one edition run, for the summary table and ``--json``."""

    edition_date: date
    dry_run: bool = False
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    uncertain: int = 0
    skipped_empty: int = 0
    already_done: int = 0
    pending: int = 0
    seconds: float = 0.0
    stopped: bool = False  # a signal stopped the run before the end
    rows: list[dict[str, object]] = field(default_factory=list)
    rows_omitted: int = 0  # rows beyond what the report keeps (counts stay exact)

    @property
    def rate(self) -> float:
        """Messages accepted per second of sending."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 3 if (self.failed or self.pending or self.uncertain or self.stopped) else 0
