"""The confirmation email of double opt-in: our own words and one link, never text from
the form, through the same SMTP sender the digests use (an injected connection factory)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from newsletter.deliver import Sender
from newsletter.dkim_sign import DkimSigner
from newsletter.mail import ListHeaders, build_message, needs_smtputf8, sender_domain
from newsletter.models import OutgoingMessage
from newsletter.render import Renderer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ConfirmationMailer:
    """Sends one confirmation email per call, on a connection of its own."""

    renderer: Renderer
    sender: str  # the From header
    list_id: str
    envelope_from: str
    connect: Callable[[], Sender]
    clock: Callable[[], datetime]
    unsubscribe_mailto: str | None = None
    dkim: DkimSigner | None = None

    async def send(self, to: str, confirm_url: str, unsubscribe_url: str) -> bool:
        """True when the server accepted it. The List-Unsubscribe link lets a stranger
        who was signed up by someone else refuse all mail from the list in one click."""
        rendered = self.renderer.render_confirmation(confirm_url)
        msg_id = f"<confirm.{secrets.token_hex(12)}@{sender_domain(self.sender)}>"
        data = build_message(
            rendered,
            to_name="",
            to_addr=to,
            headers=ListHeaders(
                self.sender, self.list_id, unsubscribe_url, self.unsubscribe_mailto
            ),
            msg_id=msg_id,
            now=self.clock(),
            bulk=False,
        )
        if self.dkim is not None:
            data = self.dkim.sign(data)
        message = OutgoingMessage(
            0,
            self.envelope_from,
            to,
            msg_id,
            data,
            smtputf8=needs_smtputf8(to) or needs_smtputf8(self.envelope_from),
        )
        connection = self.connect()
        try:
            result = await connection.send(message)
        except Exception as exc:  # a failed send must not break the page: logged, retryable
            log.warning("confirmation email not sent: %s", type(exc).__name__)
            return False
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
        if not result.ok:
            log.warning("confirmation email refused: %s", result.reply[:200])
        return result.ok
