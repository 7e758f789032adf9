"""SMTPSender over TLS (STARTTLS and implicit) with AUTH, against real aiosmtpd servers.

The servers run on 127.0.0.1 with certificates from a throwaway CA (trustme); the sender
verifies them against ``ca_file`` only. Connections are counted on the server side too.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from smtp_auth import PKI, AuthCheck, make_pki

from newsletter.deliver import SMTPSender
from newsletter.errors import SMTPUnavailableError
from newsletter.models import OutgoingMessage, SendResult
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler

USER = "mailer"
PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "Tr0ub4dor&3-not-it"


@dataclass(frozen=True, slots=True)
class Accepted:
    """One message as the server accepted it, with how the connection looked."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int  # which server-side connection (protocol instance) carried it
    tls: bool
    authenticated: bool


@dataclass
class Handler(RecordingHandler):
    """The recording server's handler, keeping how each message's connection looked."""

    accepted: list[Accepted] = field(default_factory=list)
    rsets: int = 0

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.rsets += 1
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.accepted.append(
            Accepted(
                str(envelope.mail_from),
                tuple(envelope.rcpt_tos),
                envelope.original_content or b"",
                id(server),
                tls,
                bool(session.authenticated),
            )
        )
        return "250 2.0.0 Accepted"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _starttls_server(ctx: ssl.SSLContext, handler: Handler, auth: AuthCheck) -> LocalSMTPServer:
    """Plain TCP, STARTTLS required before MAIL, AUTH required and offered only over TLS."""
    return LocalSMTPServer(
        handler,
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
    )


def _implicit_tls_server(ctx: ssl.SSLContext, handler: Handler, auth: AuthCheck) -> LocalSMTPServer:
    """TLS from the first byte; aiosmtpd cannot tell, so AUTH is allowed without STARTTLS."""
    return LocalSMTPServer(handler, listen_ssl=ctx, auth_require_tls=False, authenticator=auth)


def _server(
    security: str, ctx: ssl.SSLContext, handler: Handler, auth: AuthCheck
) -> LocalSMTPServer:
    make = _starttls_server if security == "starttls" else _implicit_tls_server
    return make(ctx, handler, auth)


def _message(rcpt: str, n: int = 0) -> OutgoingMessage:
    data = (
        f"From: Digest <digest@example.org>\r\nTo: <{rcpt}>\r\n"
        f"Subject: message {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\n"
        f".a line starting with a dot\r\nbody {n}\r\n"
    ).encode()
    return OutgoingMessage(n, "bounces@example.org", rcpt, f"<{n}@example.org>", data)


def _send_all(sender: SMTPSender, messages: list[OutgoingMessage]) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return [await sender.send(m) for m in messages]
        finally:
            await sender.close()

    return asyncio.run(go())


def _starttls_sender(port: int, ca_file: str, **kw: Any) -> SMTPSender:
    kw.setdefault("password", PASSWORD)
    return SMTPSender(
        "127.0.0.1", port, security="starttls", username=USER, timeout=5, ca_file=ca_file, **kw
    )


def test_starttls_with_auth_delivers_the_exact_bytes_to_the_envelope_recipient(pki: PKI) -> None:
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    message = _message("reader@example.org", 1)
    with _starttls_server(pki.server_ctx, handler, auth) as server:
        results = _send_all(_starttls_sender(server.port, pki.ca_file), [message])
    assert results == [SendResult(True, 250, "2.0.0 Accepted")]
    assert auth.attempts == [USER]
    [got] = handler.accepted
    assert got.data == message.data  # dot-stuffing undone: exactly the bytes built
    assert got.rcpt_tos == ("reader@example.org",)
    assert got.mail_from == "bounces@example.org"
    assert got.tls and got.authenticated
    assert server.connections == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_wrong_password_raises_without_echoing_it(pki: PKI, security: str) -> None:
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    with _server(security, pki.server_ctx, handler, auth) as server:
        sender = SMTPSender(
            "127.0.0.1",
            server.port,
            security=security,
            username=USER,
            password=WRONG_PASSWORD,
            timeout=5,
            ca_file=pki.ca_file,
        )
        with pytest.raises(SMTPUnavailableError) as err:
            _send_all(sender, [_message("reader@example.org")])
    assert WRONG_PASSWORD not in str(err.value)
    assert WRONG_PASSWORD not in repr(err.value.args)
    assert "refused" in str(err.value)
    # the server did see the attempts (aiosmtplib tries each mechanism offered): over TLS
    assert auth.attempts and set(auth.attempts) == {USER}
    assert handler.accepted == []
    assert sender.connections == 0


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_certificate_from_another_ca_is_refused(pki: PKI, security: str) -> None:
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    with _server(security, pki.rogue_ctx, handler, auth) as server:
        sender = SMTPSender(
            "127.0.0.1",
            server.port,
            security=security,
            username=USER,
            password=PASSWORD,
            timeout=5,
            ca_file=pki.ca_file,
        )
        with pytest.raises(SMTPUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            _send_all(sender, [_message("reader@example.org")])
    assert auth.attempts == []  # the password never went to the impostor
    assert handler.accepted == []
    assert sender.connections == 0


def test_credentials_are_not_sent_without_tls(pki: PKI) -> None:
    """security="none" against a server that only offers AUTH after STARTTLS: the login
    fails before any AUTH command, so the password never crosses in clear."""
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.server_ctx, handler, auth) as server:
        sender = SMTPSender("127.0.0.1", server.port, username=USER, password=PASSWORD, timeout=5)
        with pytest.raises(SMTPUnavailableError) as err:
            _send_all(sender, [_message("reader@example.org")])
    assert PASSWORD not in str(err.value)
    assert auth.attempts == []
    assert handler.accepted == []


def test_implicit_tls_with_auth(pki: PKI) -> None:
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    messages = [_message(f"r{i}@example.org", i) for i in range(2)]
    with _implicit_tls_server(pki.server_ctx, handler, auth) as server:
        sender = SMTPSender(
            "127.0.0.1",
            server.port,
            security="tls",
            username=USER,
            password=PASSWORD,
            timeout=5,
            ca_file=pki.ca_file,
        )
        results = _send_all(sender, messages)
    assert [r.ok for r in results] == [True, True]
    assert [r.data for r in handler.accepted] == [m.data for m in messages]
    assert [r.rcpt_tos for r in handler.accepted] == [("r0@example.org",), ("r1@example.org",)]
    assert all(r.tls and r.authenticated for r in handler.accepted)
    assert auth.attempts == [USER]
    assert sender.connections == server.connections == 1


@pytest.mark.parametrize(
    ("limit", "count", "connections"),
    [(2, 5, 3), (1, 3, 3), (5, 5, 1), (4, 5, 2)],
)
def test_max_per_connection_opens_new_connections(
    pki: PKI, limit: int, count: int, connections: int
) -> None:
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    messages = [_message(f"r{i}@example.org", i) for i in range(count)]
    with _starttls_server(pki.server_ctx, handler, auth) as server:
        sender = _starttls_sender(server.port, pki.ca_file, max_per_connection=limit)
        results = _send_all(sender, messages)
    assert all(r.ok for r in results)
    assert [r.data for r in handler.accepted] == [m.data for m in messages]
    assert sender.connections == connections
    assert server.connections == connections
    assert len({r.connection for r in handler.accepted}) == connections
    assert auth.attempts == [USER] * connections
    # each connection carries at most ``limit`` messages, in order
    per: dict[int, int] = {}
    for r in handler.accepted:
        per[r.connection] = per.get(r.connection, 0) + 1
    assert max(per.values()) <= limit


@pytest.mark.parametrize(
    ("reply", "code", "permanent"),
    [
        ("550 5.1.1 No such user", 550, True),
        ("553 5.1.3 Bad address syntax", 553, True),
        ("451 4.7.1 Try again later", 451, False),
        ("452 4.2.2 Mailbox full", 452, False),
    ],
)
def test_refused_rcpt_resets_and_the_connection_is_reused(
    pki: PKI, reply: str, code: int, permanent: bool
) -> None:
    handler, auth = Handler(reject={"refused@example.org": reply}), AuthCheck(USER, PASSWORD)
    refused, after = _message("refused@example.org", 1), _message("next@example.org", 2)
    with _starttls_server(pki.server_ctx, handler, auth) as server:
        sender = _starttls_sender(server.port, pki.ca_file)
        first, second = _send_all(sender, [refused, after])
    assert not first.ok and first.code == code and first.permanent is permanent
    assert not first.ambiguous
    assert first.reply == reply.split(" ", 1)[1]
    assert second.ok and second.code == 250
    assert handler.rsets == 1  # the failed transaction was reset, not left half-open
    assert [r.rcpt_tos for r in handler.accepted] == [("next@example.org",)]
    assert handler.accepted[0].data == after.data
    assert sender.connections == server.connections == 1


def test_server_connection_count_sees_every_connection(pki: PKI) -> None:
    """The server-side count is real: two senders, two connections."""
    handler, auth = Handler(), AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.server_ctx, handler, auth) as server:
        for i in range(2):
            _send_all(_starttls_sender(server.port, pki.ca_file), [_message("a@example.org", i)])
        assert server.connections == 2
    assert len({r.connection for r in handler.accepted}) == 2
