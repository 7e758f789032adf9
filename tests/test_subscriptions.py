"""Tokens bound to a purpose, key rotation, and roster rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import InputError, RosterError, TokenError
from newsletter.models import SubscriberStatus
from newsletter.subscriptions import Signer, normalise_email, read_roster


def test_token_round_trip_and_purpose_binding() -> None:
    signer = Signer(["k" * 32])
    token = signer.make("unsubscribe", 42)
    assert signer.read("unsubscribe", token) == 42
    with pytest.raises(TokenError):
        signer.read("confirm", token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2],
        lambda t: t + "x",
        lambda t: "A" + t[1:],
        lambda t: "",
        lambda t: "not.a.token",
    ],
)
def test_invalid_tokens_fail_alike(mangle) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(["k" * 32])
    with pytest.raises(TokenError) as err:
        signer.read("unsubscribe", mangle(signer.make("unsubscribe", 1)))
    assert str(err.value) == "this link is invalid or has expired"


def test_rotated_key_still_verifies_and_new_key_signs() -> None:
    old = Signer(["old-key-0123456789"])
    token = old.make("unsubscribe", 7)
    rotated = Signer(["old-key-0123456789", "new-key-0123456789"])
    assert rotated.read("unsubscribe", token) == 7
    fresh = rotated.make("unsubscribe", 7)
    assert Signer(["new-key-0123456789"]).read("unsubscribe", fresh) == 7
    with pytest.raises(TokenError):
        Signer(["other-key-0123456789"]).read("unsubscribe", token)


def test_token_never_contains_the_address() -> None:
    token = Signer(["k" * 32]).make("unsubscribe", 3)
    assert "@" not in token


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("A@Example.ORG", "a@example.org"),
        (" b@example.org ", "b@example.org"),
        ("ünï@exämple.org", "ünï@exämple.org"),
    ],
)
def test_normalise_email(raw: str, normal: str) -> None:
    assert normalise_email(raw) == normal


@pytest.mark.parametrize("bad", ["", "no-at", "a@", "@b.org", "a b@c.org"])
def test_normalise_email_rejects(bad: str) -> None:
    with pytest.raises(InputError):
        normalise_email(bad)


def test_toml_roster_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        '[[subscribers]]\nemail = "a@example.org"\ntopics = ["llm"]\n\n'
        '[[subscribers]]\nemail = "bad"\n\n'
        '[[subscribers]]\nemail = "c@example.org"\nfrequency = "hourly"\n'
    )
    roster = read_roster(path, topic_ids={"llm"})
    assert [r.subscriber.email for r in roster.rows] == ["a@example.org"]
    assert roster.rows[0].subscriber.status is SubscriberStatus.ACTIVE
    assert roster.invalid[0].startswith(f"{path}:5:")
    assert roster.invalid[1].startswith(f"{path}:8:") and "frequency" in roster.invalid[1]


def test_pending_and_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,name\na@example.org,A\nA@example.org,A again\n")
    roster = read_roster(path, pending=True)
    assert [r.subscriber.status for r in roster.rows] == [SubscriberStatus.PENDING]
    assert "appears twice" in roster.invalid[0] and ":3:" in roster.invalid[0]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("r.csv", "name,topics\nA,llm\n", "header with an email column"),
        ("r.toml", "[[subscribers]\n", "invalid TOML"),
        ("r.toml", "[other]\nx = 1\n", "expected [[subscribers]]"),
        ("r.json", "[]", "unknown format"),
    ],
)
def test_unreadable_roster_is_one_error(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(RosterError, match=message.replace("[", r"\[")):
        read_roster(path)


def test_roster_values_are_type_checked(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        '[[subscribers]]\nemail = "a@example.org"\nname = ["a", "b"]\n\n'
        '[[subscribers]]\nemail = "b@example.org"\ntimezone = "Not/AZone"\n'
    )
    roster = read_roster(path)
    assert roster.rows == []
    assert "name: expected text" in roster.invalid[0]
    assert "timezone 'Not/AZone'" in roster.invalid[1]
