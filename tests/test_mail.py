"""Message building: headers a bulk sender must carry, and nothing injectable from data."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email import message_from_bytes, policy

import pytest
from smtp_faults import REQUIRED

from newsletter.mail import (
    ListHeaders,
    build_message,
    header_safe,
    list_id_for,
    message_id,
)
from newsletter.models import RenderedEmail

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
HEADERS = ListHeaders(
    "Digest <digest@example.org>",
    list_id_for("Digest", "example.org"),
    "https://d.example/unsubscribe/TOKEN",
    "unsubscribe@example.org",
)


def _message(
    subject: str = "Hello", name: str = "Reader", html: str = "<p>hi</p>", text: str = "hi"
) -> bytes:
    return build_message(
        RenderedEmail(subject, html, text),
        to_name=name,
        to_addr="reader@example.org",
        headers=HEADERS,
        msg_id="<1.abc@example.org>",
        now=NOW,
    )


def test_required_headers_each_once() -> None:
    raw = _message()
    msg = message_from_bytes(raw, policy=policy.default)
    for name in REQUIRED:
        assert len(msg.get_all(name) or []) == 1, name
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"] == (
        "<https://d.example/unsubscribe/TOKEN>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN>"
    )
    assert msg["Precedence"] == "bulk" and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    assert b"\r\n" in raw


@pytest.mark.parametrize(
    "evil",
    [
        "Hi\r\nBcc: x@evil.example",
        "Hi\nBcc: x@evil.example",
        "Hi\x00\rBcc: x@evil.example",
        "=?UTF-8?Q?=0A?=Bcc: x@evil.example",
    ],
)
def test_no_header_injection_from_data(evil: str) -> None:
    raw = _message(subject=evil, name=evil)
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg.get_all("Bcc") is None
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in header_block.split(b"\r\n"))


def test_no_line_over_998_octets_with_huge_content() -> None:
    raw = _message(html="<p>" + "x" * 20_000 + "</p>", text="y" * 20_000, subject="s" * 2_000)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_non_ascii_subject_and_name_are_encoded() -> None:
    raw = _message(subject="Ünïcode 🚀 digest", name="Zoë Ä")
    assert raw.isascii()
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Ünïcode 🚀 digest"
    assert msg["To"].addresses[0].display_name == "Zoë Ä"


def test_message_id_is_stable_per_edition_and_subscriber() -> None:
    a = message_id("k" * 20, date(2026, 11, 24), 1, "example.org")
    assert a == message_id("k" * 20, date(2026, 11, 24), 1, "example.org")
    assert a != message_id("k" * 20, date(2026, 11, 24), 2, "example.org")
    assert a != message_id("k" * 20, date(2026, 11, 25), 1, "example.org")
    assert a.startswith("<20261124.") and a.endswith("@example.org>")


@pytest.mark.parametrize(("raw", "clean"), [("a\r\nb", "a b"), ("a\x00b", "a b"), (" x ", "x")])
def test_header_safe(raw: str, clean: str) -> None:
    assert header_safe(raw) == clean
