"""What the TLS and AUTH tests share: a throwaway certificate authority (trustme) and an
aiosmtpd authenticator that accepts one login and records every attempt."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class AuthCheck:
    """Accepts only ``user`` / ``password``; records every attempt's login name."""

    user: str
    password: str
    attempts: list[str] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.attempts.append(data.login.decode())
        ok = data.login == self.user.encode() and data.password == self.password.encode()
        # handled=False: aiosmtpd replies 535 itself
        return AuthResult(success=ok, handled=False, auth_data=data)


@dataclass(frozen=True, slots=True)
class PKI:
    ca_file: str  # the CA the sender trusts
    server_ctx: ssl.SSLContext  # a certificate that CA signed, for 127.0.0.1 and localhost
    rogue_ctx: ssl.SSLContext  # a certificate for the same names from another CA


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def make_pki(folder: Path) -> PKI:
    """A CA written to ``folder/ca.pem``, a server certificate it signed, and a rogue one."""
    ca = trustme.CA()
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return PKI(str(path), _server_context(ca), _server_context(trustme.CA()))
