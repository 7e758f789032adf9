"""Sign-up state in the store: single-use confirmations, one email a day, rate limits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW
from newsletter.errors import TokenError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store import Store
from newsletter.subscriptions import Signer

DAY = timedelta(hours=24)
VALID = timedelta(hours=72)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'signup.db'}")


def _pending(store: Store, email: str = "new@example.org") -> int:
    store.upsert_subscriber(Subscriber(0, email, status=SubscriberStatus.PENDING), NOW)
    sub = store.subscriber(email=email)
    assert sub is not None
    return sub.id


def test_a_confirmation_works_once_and_activates(store: Store) -> None:
    sid = _pending(store)
    nonce = store.issue_confirmation(sid, NOW)
    assert nonce is not None
    assert store.confirm(nonce, NOW + timedelta(hours=1), VALID) == sid
    assert store.subscriber(id=sid).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert store.confirm(nonce, NOW + timedelta(hours=2), VALID) is None  # single use


def test_a_confirmation_expires(store: Store) -> None:
    sid = _pending(store)
    nonce = store.issue_confirmation(sid, NOW)
    assert nonce is not None
    assert store.confirm(nonce, NOW + VALID + timedelta(seconds=1), VALID) is None
    assert store.subscriber(id=sid).status is SubscriberStatus.PENDING  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("later", "issued"), [(timedelta(hours=1), False), (DAY + timedelta(seconds=1), True)]
)
def test_one_confirmation_email_a_day_per_address(
    store: Store, later: timedelta, issued: bool
) -> None:
    sid = _pending(store)
    assert store.issue_confirmation(sid, NOW) is not None
    assert (store.issue_confirmation(sid, NOW + later) is not None) is issued


def test_confirming_never_revives_a_suppressed_address(store: Store) -> None:
    sid = _pending(store)
    nonce = store.issue_confirmation(sid, NOW)
    assert nonce is not None
    store.unsubscribe_id(sid, NOW)
    assert store.confirm(nonce, NOW, VALID) is None
    assert store.subscriber(id=sid).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_forget_removes_confirmations_too(store: Store) -> None:
    sid = _pending(store)
    assert store.issue_confirmation(sid, NOW) is not None
    assert store.forget("new@example.org", NOW)
    assert store.subscriber(id=sid) is None


def test_rate_limit_per_key_and_window(store: Store) -> None:
    hour = timedelta(hours=1)
    allowed = [store.allow("signup-ip", "192.0.2.1", NOW, 3, hour) for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    assert store.allow("signup-ip", "192.0.2.2", NOW, 3, hour)  # another key
    assert store.allow("signup-ip", "192.0.2.1", NOW + hour + timedelta(seconds=1), 3, hour)


def test_text_tokens_carry_their_purpose() -> None:
    signer = Signer(["k" * 20])
    token = signer.make_text("confirm", "nonce-1")
    assert signer.read_text("confirm", token) == "nonce-1"
    with pytest.raises(TokenError):
        signer.read_text("unsubscribe", token)
    with pytest.raises(TokenError):
        signer.read_text("confirm", signer.make("confirm", 7))  # an id is not a nonce
    rotated = Signer(["new" * 7, "k" * 20])
    assert rotated.read_text("confirm", token) == "nonce-1"  # old keys still verify
