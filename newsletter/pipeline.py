"""One edition, end to end: collect -> rank -> render -> deliver, resumable.

Every edge is injected (store, fetcher, sender, clock value, signing key); this module only
orchestrates. The ledger row is claimed before the SMTP transaction and marked after it, so a
rerun sends every row not yet sent and nothing twice.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from newsletter.config import Config
from newsletter.dkim_sign import DkimSigner
from newsletter.mail import (
    ListHeaders,
    build_message,
    list_id_for,
    message_id,
    sender_domain,
)
from newsletter.models import (
    Digest,
    StoredPaper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.rank import Ranker, RankResult
from newsletter.rank.semantic import Encoder, paper_text
from newsletter.render import Branding, Links, Renderer
from newsletter.store import Store
from newsletter.subscriptions import Signer

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def edition_date_for(now: datetime, zone: str) -> date:
    """The edition a run at ``now`` belongs to: the calendar day in the list's time zone."""
    return now.astimezone(ZoneInfo(zone)).date()


def embed_candidates(
    store: Store, encoder: Encoder | None, papers: Sequence[StoredPaper]
) -> npt.NDArray[np.float32] | None:
    """Each candidate's embedding, computing only those not cached yet (about 24 a second)."""
    if encoder is None or not papers:
        return None
    cached = store.embeddings([p.id for p in papers], encoder.name)
    missing = [p for p in papers if p.id not in cached]
    if missing:
        fresh = encoder.encode([paper_text(p) for p in missing])
        new = {p.id: v for p, v in zip(missing, fresh, strict=True)}
        store.save_embeddings(encoder.name, new)
        cached.update(new)
    return np.stack([cached[p.id] for p in papers]).astype(np.float32)


def is_due(subscriber: Subscriber, edition: date, last_sent: date | None) -> bool:
    """Daily subscribers every day; weekly ones when their last edition is a week old;
    paused ones never."""
    if subscriber.paused:
        return False
    if subscriber.frequency != "weekly":
        return True
    return last_sent is None or (edition - last_sent).days >= 7


def renderer_for(config: Config) -> Renderer:
    """The email renderer with the list's branding and the operator's templates."""
    nl = config.newsletter
    d = config.digest
    branding = Branding(
        nl.name,
        nl.base_url,
        nl.postal_address,
        {t.id: t.name for t in config.topics},
        d.layout,
        d.subject,
    )
    return Renderer(branding, config.templates_dir())


class Edition:
    """The once-per-edition state: candidates, ranking context, history, renderer."""

    def __init__(
        self,
        config: Config,
        store: Store,
        now: datetime,
        renderer: Renderer | None = None,
        encoder: Encoder | None = None,
        dkim: DkimSigner | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.date = edition_date_for(now, config.newsletter.timezone)
        topics = {t.id: t for t in config.topic_values()}
        since = now - timedelta(days=config.digest.lookback_days)
        self.candidates = store.papers_since(since)
        ids = [p.id for p in self.candidates]
        self.ranker = Ranker(
            self.candidates,
            topics,
            config.ranking.settings(),
            now,
            store.upvote_history(ids),
            encoder,
            embed_candidates(store, encoder, self.candidates),
        )
        self._renderer = renderer
        self.dkim = dkim  # signs each composed message when set

    def on(self, day: date) -> Edition:
        """The same edition context (candidates, ranker, renderer) for another date: one
        run may serve subscribers whose local dates differ."""
        other = copy.copy(self)
        other.date = day
        return other

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = renderer_for(self.config)
        return self._renderer

    def rank(self, subscribers: Sequence[Subscriber]) -> RankResult:
        """Every subscriber's picks at once, minus what each was sent before."""
        history = self.store.sent_paper_ids(
            [s.id for s in subscribers], [p.id for p in self.candidates]
        )
        return self.ranker.rank(subscribers, history, self.config.digest.max_papers)

    def digest(self, subscriber: Subscriber, ranked: RankResult) -> Digest:
        return Digest(subscriber, self.date, tuple(ranked.items(subscriber.id)))

    def links(self, signer: Signer, subscriber: Subscriber) -> Links:
        base = self.config.newsletter.base_url
        return Links(
            unsubscribe=f"{base}/unsubscribe/{signer.make('unsubscribe', subscriber.id)}",
            archive=f"{base}/archive/{self.date}/{signer.make('archive', subscriber.id)}",
            preferences=f"{base}/preferences/{signer.make('preferences', subscriber.id)}",
        )

    def compose(
        self,
        digest: Digest,
        signer: Signer,
        secret: str,
        msg_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> Composed:
        """Render one digest and wrap it in its message, headers and all."""
        nl = self.config.newsletter
        sub = digest.subscriber
        domain = sender_domain(nl.sender)
        links = self.links(signer, sub)
        rendered, html_qp = self.renderer.render_encoded(digest, links)
        msg_id = msg_id or message_id(secret, self.date, sub.id, domain)
        msg = build_message(
            rendered,
            to_name=sub.name,
            to_addr=sub.email,
            msg_id=msg_id,
            now=sent_at or self.now,
            html_qp=html_qp,
            headers=ListHeaders(
                nl.sender,
                nl.list_id or list_id_for(nl.name, domain),
                links.unsubscribe,
                nl.unsubscribe_mailto,
            ),
        )
        if self.dkim is not None:
            msg = self.dkim.sign(msg)
        return Composed(digest, rendered.subject, msg_id, msg)


@dataclass(frozen=True, slots=True)
class Composed:
    """One subscriber's finished message for this edition."""

    digest: Digest
    subject: str
    message_id: str
    data: bytes


def digests(
    config: Config,
    store: Store,
    now: datetime,
    email: str | None = None,
    encoder: Encoder | None = None,
) -> tuple[list[Digest], str]:
    """Every active subscriber's digest for the edition at ``now`` (or one subscriber's),
    and which relevance model chose them."""
    edition = Edition(config, store, now, encoder=encoder)
    return _digests(edition, store, email), edition.ranker.model


def _digests(edition: Edition, store: Store, email: str | None) -> list[Digest]:
    subs = [s for s in store.subscribers(SubscriberStatus.ACTIVE) if not s.paused]
    if email is not None:
        subs = [s for s in subs if s.email == email]
    ranked = edition.rank(subs)
    return [edition.digest(s, ranked) for s in subs]


def preview(
    config: Config,
    store: Store,
    signer: Signer,
    secret: str,
    now: datetime,
    email: str | None = None,
    encoder: Encoder | None = None,
) -> list[Composed]:
    """The message each active subscriber would get now, ledger untouched."""
    edition = Edition(config, store, now, encoder=encoder)
    return [edition.compose(d, signer, secret) for d in _digests(edition, store, email)]
