"""Optional DKIM signing (dkimpy) of each finished message, covering the list headers.

Signing the List-Unsubscribe and List-Unsubscribe-Post headers is what lets a mailbox
provider trust the one-click unsubscribe (RFC 8058 section 4). The key comes from a file;
a key that cannot sign fails at start, not on the first message.
"""

from __future__ import annotations

from collections.abc import Sequence

import dkim

from newsletter.errors import ConfigError

_PROBE = (
    b"From: probe@example.org\r\nTo: probe@example.org\r\nSubject: probe\r\n"
    b"List-Unsubscribe: <https://example.org/u>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nprobe\r\n"
)


class DkimSigner:
    """Prepends a ``DKIM-Signature`` (rsa-sha256, relaxed/relaxed).

    Every signed header is listed twice in ``h=`` (oversigning): a header added in transit,
    such as a second List-Unsubscribe, then breaks the signature instead of riding on it.
    """

    def __init__(self, selector: str, domain: str, key: bytes, headers: Sequence[str]) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.key = key
        self.headers = [h.encode("ascii") for h in headers] * 2
        try:
            self.sign(_PROBE)
        except (dkim.DKIMException, ValueError, IndexError) as exc:
            raise ConfigError(
                f"dkim.key_file: the key cannot sign "
                f"({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]})",
                hint="expected a PEM RSA private key, e.g. from openssl genrsa -out dkim.pem 2048",
            ) from None

    def sign(self, data: bytes) -> bytes:
        signature = dkim.sign(
            data,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"rsa-sha256",
            include_headers=self.headers,
            linesep=b"\r\n",
        )
        return bytes(signature) + data
