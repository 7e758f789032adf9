"""The SMTP sender against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from newsletter.deliver import OutboxSender, SMTPSender, enhanced_status, is_hard_bounce
from newsletter.errors import SMTPUnavailableError
from newsletter.models import OutgoingMessage, SendResult
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler

DATA = (
    b"From: d@example.org\r\nTo: Someone <other@example.org>\r\n"
    b"Bcc: hidden@example.org\r\nSubject: x\r\n\r\nbody\r\n"
)


def _msg(rcpt: str) -> OutgoingMessage:
    return OutgoingMessage(1, "d@example.org", rcpt, "<m@example.org>", DATA)


def test_envelope_recipient_is_exactly_the_subscriber() -> None:
    with LocalSMTPServer() as server:
        sender = SMTPSender("127.0.0.1", server.port, timeout=5)

        async def go() -> list[SendResult]:
            results = [await sender.send(_msg(f"r{i}@example.org")) for i in range(3)]
            await sender.close()
            return results

        results = asyncio.run(go())
    assert all(r.ok for r in results)
    # To/Bcc headers in the data are never used as recipients
    assert [r.rcpt_tos for r in server.received] == [
        ("r0@example.org",),
        ("r1@example.org",),
        ("r2@example.org",),
    ]


def test_permanent_and_temporary_refusals_then_the_connection_still_works() -> None:
    handler = RecordingHandler(
        reject={
            "gone@example.org": "550 5.1.1 No such user",
            "policy@example.org": "550 5.7.1 Rejected by policy",
            "later@example.org": "451 4.7.1 Try again later",
        }
    )
    with LocalSMTPServer(handler) as server:
        sender = SMTPSender("127.0.0.1", server.port, timeout=5)

        async def go() -> list[SendResult]:
            out = [
                await sender.send(_msg(a))
                for a in (
                    "gone@example.org",
                    "policy@example.org",
                    "later@example.org",
                    "ok@example.org",
                )
            ]
            await sender.close()
            return out

        gone, policy, later, ok = asyncio.run(go())
    assert not gone.ok and gone.permanent and is_hard_bounce(gone)
    assert not policy.ok and policy.permanent and not is_hard_bounce(policy)
    assert not later.ok and not later.permanent and later.code == 451
    assert ok.ok
    assert [r.rcpt_tos for r in server.received] == [("ok@example.org",)]


def test_server_down_raises_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = SMTPSender("127.0.0.1", port, timeout=2)
    with pytest.raises(SMTPUnavailableError, match="cannot reach the SMTP server"):
        asyncio.run(sender.send(_msg("a@example.org")))


def test_outbox_writes_the_exact_bytes(tmp_path: Path) -> None:
    sender = OutboxSender(tmp_path / "out")
    result = asyncio.run(sender.send(_msg("a@example.org")))
    assert result.ok
    assert (tmp_path / "out" / "a@example.org.eml").read_bytes() == DATA


@pytest.mark.parametrize(
    ("reply", "code"),
    [("550 5.1.1 No such user", "5.1.1"), ("5.7.1 policy", "5.7.1"), ("no code", None)],
)
def test_enhanced_status(reply: str, code: str | None) -> None:
    assert enhanced_status(reply) == code
