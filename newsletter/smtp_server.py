"""A local SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts.

The demo starts one so it needs no mail setup; tests use it as the real server they
send through. Port 0 picks a free port; ``port`` tells which.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def message(self) -> Message:
        return message_from_bytes(self.data)


@dataclass
class RecordingHandler:
    """Accepts every message and keeps it, unless told to misbehave (tests inject faults):

    ``reject`` maps an address to the reply RCPT gets; ``temporary`` to how many more times
    RCPT answers 451 before it accepts; ``drop_after_data`` keeps the message but hangs up
    before the 250; ``delay`` seconds pass before each 250 (a slow server).
    """

    received: list[Received] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    temporary: dict[str, int] = field(default_factory=dict)
    drop_after_data: set[str] = field(default_factory=set)
    delay: float = 0.0
    accepted_at: list[float] = field(default_factory=list)  # monotonic time of each 250
    sessions: int = 0  # EHLOs seen: one per connection

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.reject:
            return self.reject[address]
        if self.temporary.get(address, 0) > 0:
            self.temporary[address] -= 1
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), data))
        self.accepted_at.append(time.monotonic())
        # the ambiguous case: the message is kept, but no 250 reaches the client
        if self.drop_after_data & set(envelope.rcpt_tos) and server.transport is not None:
            server.transport.close()
        return "250 Message accepted for delivery"


class LocalSMTPServer:
    """Runs an aiosmtpd server in a thread; use as a context manager.

    ``listen_ssl`` makes it an implicit-TLS server; ``smtp_options`` go to aiosmtpd's
    ``SMTP`` (``tls_context`` for STARTTLS, ``authenticator``, ``auth_required``...).
    ``connections`` counts the TCP connections accepted.
    """

    def __init__(
        self,
        handler: Any | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        smtputf8: bool = False,
        listen_ssl: ssl.SSLContext | None = None,
        **smtp_options: Any,
    ) -> None:
        self.handler = handler if handler is not None else RecordingHandler()
        self.smtputf8 = smtputf8
        self.listen_ssl = listen_ssl
        self.smtp_options = smtp_options
        self.connections = 0
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> LocalSMTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

        async def create() -> asyncio.Server:
            return await self._loop.create_server(
                self._protocol, host=self.host, port=self.port, ssl=self.listen_ssl
            )

        self._server = asyncio.run_coroutine_threadsafe(create(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]

    def _protocol(self) -> SMTP:
        self.connections += 1
        return SMTP(
            self.handler,
            hostname="localhost",
            decode_data=False,
            enable_SMTPUTF8=self.smtputf8,
            **self.smtp_options,
        )

    def stop(self) -> None:
        if self._server is not None:
            server = self._server

            async def close() -> None:
                server.close()
                # sessions still open (a failed TLS handshake, say): end them
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @property
    def received(self) -> list[Received]:
        return list(self.handler.received)
