"""Build the MIME message for one digest: headers and parts, pure.

Every header value passes ``header_safe`` so nothing from data can start a new header
(CR, LF, NUL and other controls become spaces), and the envelope recipient is passed to the
sender explicitly, never parsed from these headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

from newsletter.models import RenderedEmail

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Parts are built at 78 columns (quoted-printable needs short lines); headers are written
# with the RFC 5322 hard limit (``to_bytes``) so long List-Unsubscribe URIs are never turned
# into encoded-words, which mail clients would not recognise.


def header_safe(value: str, limit: int = 900) -> str:
    """One line of header text: controls folded to spaces, bounded.

    A literal ``=?`` is broken up too: the email package would decode an encoded-word in
    data (``=?UTF-8?Q?=0A?=``) into a newline and start a new header (CVE-2024-6923).
    """
    return _CONTROL.sub(" ", value).replace("=?", "= ?").strip()[:limit]


def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def message_id(secret: str, edition: date, subscriber_id: int, domain: str) -> str:
    """Stable per (edition, subscriber): a retry or a dry run carries the same Message-ID."""
    digest = hmac.new(
        secret.encode(), f"msgid:{edition.isoformat()}:{subscriber_id}".encode(), hashlib.sha256
    ).hexdigest()[:24]
    return f"<{edition.strftime('%Y%m%d')}.{digest}@{domain}>"


@dataclass(frozen=True, slots=True)
class ListHeaders:
    """The per-list and per-subscriber values the headers need."""

    sender: str
    list_id: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None


def list_id_for(name: str, domain: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "digest"
    return f"{header_safe(name)} <{slug}.{domain}>"


def build_message(
    email: RenderedEmail,
    *,
    to_name: str,
    to_addr: str,
    headers: ListHeaders,
    msg_id: str,
    now: datetime,
) -> EmailMessage:
    """The complete message: text part first, HTML alternative second."""
    utf8 = needs_smtputf8(to_addr)
    msg = EmailMessage(policy=SMTP.clone(utf8=True) if utf8 else SMTP)
    from_name, from_addr = parseaddr(headers.sender)
    msg["From"] = Address(header_safe(from_name), addr_spec=from_addr)
    if utf8:  # the header registry refuses a non-ASCII local part as an Address object
        name = header_safe(to_name).replace("\\", "").replace('"', "")
        msg["To"] = f'"{name}" <{header_safe(to_addr)}>' if name else header_safe(to_addr)
    else:
        msg["To"] = Address(header_safe(to_name), addr_spec=header_safe(to_addr))
    msg["Subject"] = header_safe(email.subject, 250)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = msg_id
    msg["List-Id"] = headers.list_id
    unsub = f"<{header_safe(headers.unsubscribe_url)}>"
    if headers.unsubscribe_mailto:
        token = headers.unsubscribe_url.rsplit("/", 1)[-1]
        unsub += f", <mailto:{headers.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}>"
    msg["List-Unsubscribe"] = unsub
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(email.text, cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    """The message as sent on the wire (CRLF line ends, headers up to 998 octets)."""
    return msg.as_bytes(policy=msg.policy.clone(max_line_length=998))


def needs_smtputf8(address: str) -> bool:
    """An address with non-ASCII characters needs SMTPUTF8 on the wire (RFC 6531)."""
    return not address.isascii()
