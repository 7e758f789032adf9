"""Senders: the only code that talks SMTP, behind the small ``Sender`` protocol.

``SMTPSender`` keeps one aiosmtplib connection open across messages, resets or drops it after
a failed transaction, and always passes the recipient list explicitly. ``OutboxSender``
writes the exact bytes to files instead (``send --dry-run``) and opens no connection.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

import aiosmtplib

from newsletter.errors import SMTPUnavailableError
from newsletter.models import OutgoingMessage, SendResult

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class Sender(Protocol):
    """Delivers one message; raises ``SMTPUnavailableError`` when the server cannot be reached."""

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


def enhanced_status(reply: str) -> str | None:
    """The RFC 3463 code in a reply ("5.1.1"), if any."""
    m = _ENHANCED.search(reply)
    return ".".join(m.groups()) if m else None


def is_hard_bounce(result: SendResult) -> bool:
    """5.1.x: the mailbox does not exist; the address should be suppressed."""
    status = enhanced_status(result.reply) or ""
    return result.permanent and status.startswith("5.1.")


class SMTPSender:
    """aiosmtplib over one reused connection (a pool comes with the delivery work)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._host, self._port = host, port
        self._security = security
        self._username, self._password = username, password
        self._timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._smtp = None
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
        )
        try:
            await smtp.connect()
            await smtp.ehlo()
            if self._username:
                await smtp.login(self._username, self._password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SMTPUnavailableError(
                f"SMTP login to {self._host}:{self._port} refused ({exc.code})",
                hint="check smtp.username and the password",
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SMTPUnavailableError(
                f"cannot reach the SMTP server at {self._host}:{self._port}: "
                f"{exc.__class__.__name__}",
                hint="is the server running? see [smtp] in the config",
            ) from None
        self._smtp = smtp
        return smtp

    async def send(self, message: OutgoingMessage) -> SendResult:
        """One transaction: MAIL, RCPT (exactly the subscriber), DATA.

        A refusal is unambiguous whenever it comes; losing the connection before DATA is a
        plain temporary failure, losing it during or after DATA is ambiguous (the server
        may have kept the message), so the ledger can mark that row uncertain.
        """
        smtp = await self._connection()
        options: list[str] = []
        encoding = "ascii"
        if message.smtputf8:
            if not smtp.supports_extension("smtputf8"):
                return SendResult(
                    False,
                    None,
                    "the server does not offer SMTPUTF8, which this "
                    "internationalised address needs",
                    permanent=True,
                )
            options, encoding = ["SMTPUTF8"], "utf-8"
        try:
            await smtp.mail(message.mail_from, options=options, encoding=encoding)
            await smtp.rcpt(message.recipient, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            return SendResult(False, exc.code, exc.message, exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            return SendResult(False, None, _describe(exc), False)
        try:
            response = await smtp.data(message.data)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            return SendResult(False, exc.code, exc.message, exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            return SendResult(False, None, _describe(exc), False, ambiguous=True)
        return SendResult(True, response.code, response.message)

    async def _reset(self) -> None:
        """A failed transaction must not leave the connection mid-transaction."""
        if self._smtp is None:
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop()

    async def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self._smtp.close()
        self._smtp = None


class OutboxSender:
    """Writes each message to ``DIR/<address>.eml``; used by ``send --dry-run``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def send(self, message: OutgoingMessage) -> SendResult:
        path = self.directory / f"{safe_filename(message.recipient)}.eml"
        path.write_bytes(message.data)
        return SendResult(True, 250, f"written to {path}")

    async def close(self) -> None:
        return None


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:500]


def safe_filename(address: str) -> str:
    """A file name for an address: the address itself when it is a safe name, else a
    cleaned version plus a short hash, so two addresses never share a file."""
    cleaned = re.sub(r"[^\w@.+-]", "_", address)[:200].lstrip(".") or "_"
    if cleaned == address:
        return cleaned
    return f"{cleaned[:180]}-{hashlib.sha256(address.encode()).hexdigest()[:10]}"
