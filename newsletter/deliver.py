"""Senders: the only code that talks SMTP, behind the small ``Sender`` protocol.

``SMTPSender`` keeps one aiosmtplib connection open across messages (the engine runs a pool
of them), resets or drops it after a failed transaction, and always passes the recipient
list explicitly. ``OutboxSender``
writes the exact bytes to files instead (``send --dry-run``) and opens no connection.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path
from typing import Protocol

import aiosmtplib

from newsletter import failpoints
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


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib with a C-speed DATA for messages that are already clean CRLF text.

    aiosmtplib normalises line endings and dot-stuffs with two regex passes over the whole
    message, about 2 ms for 87 KB, more than building the message. Ours are built with CRLF
    line ends only, so ``bytes.replace`` does the dot-stuffing; anything else takes the
    library's own path.
    """

    content_sent = False  # set once the message content is on its way (for ambiguity)

    async def data(  # type: ignore[override]
        self, message: str | bytes, /, *, timeout: float | None = None, final: float | None = None
    ) -> aiosmtplib.SMTPResponse:
        """DATA; ``final`` is how long to wait for the reply after the content (RFC 5321
        suggests 10 minutes: relays scan messages before they answer)."""
        self.content_sent = False
        if isinstance(message, str) or not _clean_crlf(message) or self.protocol is None:
            self.content_sent = True  # the library's path: no way to tell the stage
            return await super().data(message, timeout=final or timeout or self.timeout)
        protocol = self.protocol
        wait = timeout or self.timeout
        try:
            start = await protocol.execute_command(b"DATA", timeout=wait)
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            stuffed = message.replace(b"\r\n.", b"\r\n..")
            if stuffed.startswith(b"."):
                stuffed = b"." + stuffed
            if failpoints.due("mid-data"):
                protocol.write(stuffed[: len(stuffed) // 2])
                failpoints.crash()
            # write and read without an await between them: the reply cannot be missed
            protocol.write(stuffed + b".\r\n")
            self.content_sent = True
            response = await protocol.read_response(timeout=final or wait)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response


def _clean_crlf(data: bytes) -> bool:
    """Every CR and LF is part of a CRLF pair and the data ends with one."""
    pairs = data.count(b"\r\n")
    return data.endswith(b"\r\n") and data.count(b"\r") == pairs == data.count(b"\n")


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifying TLS: the system's CAs, or only ``ca_file`` (a private relay's CA)."""
    return ssl.create_default_context(cafile=ca_file)


class SMTPSender:
    """One aiosmtplib connection, reused for up to ``max_per_connection`` messages.

    After a refused transaction the connection is reset (RSET) or, if that fails, dropped,
    so no connection is reused in a bad state. The envelope recipient is always exactly the
    message's subscriber.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        data_timeout: float | None = None,
        max_per_connection: int = 100,
        ca_file: str | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._security = security
        self._username, self._password = username, password
        self._timeout = timeout
        self._data_timeout = data_timeout or timeout
        self._max = max_per_connection
        self._ca_file = ca_file
        self._smtp: _SMTP | None = None
        self._used = 0
        self.connections = 0  # opened so far, for reports and tests

    async def _connection(self) -> _SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            if self._used < self._max:
                return self._smtp
            await self.close()  # the per-connection limit: QUIT and start afresh
        self._smtp = None
        tls = self._security in ("tls", "starttls")
        smtp = _SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            tls_context=tls_context(self._ca_file) if tls else None,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
            if self._username:
                await smtp.login(self._username, self._password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise SMTPUnavailableError(
                f"SMTP login to {self._host}:{self._port} refused ({exc.code})",
                hint="check smtp.username and the password",
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise SMTPUnavailableError(
                f"cannot reach the SMTP server at {self._host}:{self._port}: {_describe(exc)}",
                hint="is the server running? see [smtp] in the config",
            ) from None
        self._smtp, self._used = smtp, 0
        self.connections += 1
        return smtp

    async def send(self, message: OutgoingMessage) -> SendResult:
        """One transaction: MAIL, RCPT (exactly the subscriber), DATA.

        A refusal is unambiguous whenever it comes; losing the connection before DATA is a
        plain temporary failure, losing it during or after DATA is ambiguous (the server
        may have kept the message), so the ledger can mark that row uncertain. A reused
        connection the server closed while idle is replaced once, transparently.
        """
        reused = self._smtp is not None and self._smtp.is_connected and self._used < self._max
        smtp = await self._connection()
        self._used += 1
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
        stage = "MAIL"
        try:
            await smtp.mail(message.mail_from, options=options, encoding=encoding)
            stage = "RCPT"
            await smtp.rcpt(message.recipient, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            return SendResult(False, exc.code, exc.message, exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            if reused and stage == "MAIL" and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                return await self.send(message)  # closed while idle: once more, afresh
            return SendResult(False, None, f"{stage}: {_describe(exc)}", False)
        try:
            response = await smtp.data(message.data, final=self._data_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 200:  # no reply we can read after the content: it may be kept
                await self._drop()
                return SendResult(False, None, exc.message, False, ambiguous=smtp.content_sent)
            await self._reset()
            return SendResult(False, exc.code, exc.message, exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            # lost before the content went out (on the DATA command): a plain failure
            return SendResult(False, None, _describe(exc), False, ambiguous=smtp.content_sent)
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
