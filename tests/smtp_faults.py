"""Servers that fail at the connection level, and a check every received message must pass."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterable
from email import message_from_bytes, policy
from types import TracebackType

from newsletter.smtp_server import Received

REQUIRED = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
    "Auto-Submitted",
)


class ConnectGate:
    """A TCP front for an SMTP server: connections pass through to ``backend_port`` while
    ``open`` is set and no refusals are queued in ``refuse_next``; the others get ``421`` at
    connect and are closed."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.open = True
        self.refuse_next = 0
        self.refused = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open or self.refuse_next > 0:
            self.refuse_next = max(0, self.refuse_next - 1)
            self.refused += 1
            writer.write(b"421 4.3.2 Service not available, closing channel\r\n")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def __enter__(self) -> ConnectGate:
        self._thread.start()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._client, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server = self._server
        if server is not None:

            async def stop() -> None:
                server.close()

            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def assert_conformant(received: Iterable[Received]) -> None:
    """Every message a server accepted is standards-clean: CRLF only, no line over 998
    octets, each required header once, one envelope recipient matching To, one-click
    unsubscribe with an https and a mailto URI."""
    for r in received:
        raw = r.data
        assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
        assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        msg = message_from_bytes(raw, policy=policy.default)
        # a confirmation email goes to one person who asked: not bulk, no Precedence
        confirmation = str(msg["Message-ID"]).startswith("<confirm.")
        for name in REQUIRED:
            wanted = 0 if confirmation and name == "Precedence" else 1
            assert len(msg.get_all(name) or []) == wanted, name
        assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
        assert len(r.rcpt_tos) == 1
        assert msg["To"].addresses[0].addr_spec.lower() == r.rcpt_tos[0].lower()
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        uris = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
        assert any(u.startswith("https://") for u in uris), uris
        assert any(u.startswith("mailto:") for u in uris), uris
        assert confirmation or msg["Precedence"] == "bulk"
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(msg["Message-ID"]))
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
