"""DKIM signing: real keys, real messages from ``build_message``, verified by dkimpy.

The public key is served by an in-process ``dnsfunc`` (no network). The signature must
cover the one-click unsubscribe headers (RFC 8058 section 4), so changing them after
signing must break it; a key that cannot sign, or an incomplete [dkim] section, fails
when the config loads, not on the first message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.util import parse_tag_value
from pydantic import ValidationError

from conftest import NOW, write_config
from newsletter.config import load_config
from newsletter.config_delivery import DKIM_HEADERS, DkimSection
from newsletter.dkim_sign import DkimSigner
from newsletter.errors import ConfigError
from newsletter.mail import ListHeaders, build_message, list_id_for
from newsletter.models import RenderedEmail
from newsletter.sending import dkim_signer

SELECTOR, DOMAIN = "digest2026", "example.org"
HEADERS = ListHeaders(
    "Digest <digest@example.org>",
    list_id_for("Digest", DOMAIN),
    "https://d.example/unsubscribe/TOKEN",
    "unsubscribe@example.org",
)
UNSUB_LINE = b"List-Unsubscribe: <https://d.example/unsubscribe/TOKEN>"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
PUBLIC_DER = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
TXT = b"v=DKIM1; k=rsa; p=" + base64.b64encode(PUBLIC_DER)

DnsFunc = Callable[..., bytes | None]


def _dns(record: bytes = TXT, selector: str = SELECTOR) -> DnsFunc:
    """A resolver that knows one TXT record: ``<selector>._domainkey.<domain>.``"""
    wanted = f"{selector}._domainkey.{DOMAIN}.".encode()

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == wanted else None

    return lookup


def _message(
    subject: str = "Today: small models, big ideas",
    name: str = "Reader",
    to_addr: str = "reader@example.org",
    text: str = "Hello\n\n1. A paper\n",
) -> bytes:
    return build_message(
        RenderedEmail(subject, "<p>Hello</p>\n<p>A paper</p>", text),
        to_name=name,
        to_addr=to_addr,
        headers=HEADERS,
        msg_id="<20261124.abc@example.org>",
        now=NOW,
    )


@pytest.fixture(scope="module")
def signer() -> DkimSigner:
    return DkimSigner(SELECTOR, DOMAIN, KEY_PEM, DKIM_HEADERS)


def _signature_tags(signed: bytes) -> dict[bytes, bytes]:
    value = message_from_bytes(signed, policy=compat32)["DKIM-Signature"]
    return parse_tag_value(re.sub(r"\s+", "", str(value)).encode())


def _signed_headers(signed: bytes) -> list[bytes]:
    """The h= tag: the header names the signature covers, lowercased, in order."""
    return _signature_tags(signed)[b"h"].lower().split(b":")


@pytest.mark.parametrize(
    ("subject", "name", "to_addr"),
    [
        ("Today: small models, big ideas", "Reader", "reader@example.org"),
        ("Ünïcode títles and émoji 🚀", 'Zoë "Z" O\'Brien', "zoe@example.org"),
        ("word " * 60, "A. N. Other, PhD", "other@example.org"),
        ("Hi\r\nBcc: x@evil.example", "=?utf-8?q?=0A?=", "x@example.org"),
        ("EAI recipient", "Ünï", "ünï@exämple.org"),
    ],
)
def test_signed_message_verifies(signer: DkimSigner, subject: str, name: str, to_addr: str) -> None:
    raw = _message(subject, name, to_addr)
    signed = signer.sign(raw)
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(raw)  # prepended, the message itself untouched
    assert dkim.verify(signed, dnsfunc=_dns())


def test_signature_tags(signer: DkimSigner) -> None:
    tags = _signature_tags(signer.sign(_message()))
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()
    assert tags[b"a"] == b"rsa-sha256"
    assert tags[b"c"] == b"relaxed/relaxed"
    signed_headers = tags[b"h"].lower().split(b":")
    assert b"list-unsubscribe" in signed_headers
    assert b"list-unsubscribe-post" in signed_headers
    assert set(signed_headers) == {h.lower().encode() for h in DKIM_HEADERS}


def test_wrong_public_key_or_no_record_fails(signer: DkimSigner) -> None:
    signed = signer.sign(_message())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_der = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert dkim.verify(signed, dnsfunc=_dns())  # the control: the right key verifies
    assert not dkim.verify(
        signed, dnsfunc=_dns(b"v=DKIM1; k=rsa; p=" + base64.b64encode(other_der))
    )
    assert not dkim.verify(signed, dnsfunc=_dns(selector="other"))


@pytest.mark.parametrize(
    ("old", "new", "still_valid"),
    [
        (UNSUB_LINE, b"List-Unsubscribe: <https://evil.example/unsubscribe/TOKEN>", False),
        (UNSUB_LINE, UNSUB_LINE.replace(b"TOKEN", b"TOKEM"), False),
        (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks",
            False,
        ),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"", False),  # removed
        (b"Subject: Today", b"Subject: Tonight", False),
        (b"From: Digest", b"From: Digset", False),
        (b"List-Id: Digest", b"List-Id: Digets", False),
        (b"\r\n\r\nHello\r\n", b"\r\n\r\nHullo\r\n", False),  # the text part's body
        # the controls: relaxed canonicalisation ignores whitespace and header-name case
        (UNSUB_LINE, UNSUB_LINE.replace(b": <", b":   <"), True),
        (UNSUB_LINE, UNSUB_LINE.replace(b"List-Unsubscribe:", b"list-unsubscribe:"), True),
    ],
)
def test_changing_a_signed_header_after_signing_breaks_the_signature(
    signer: DkimSigner, old: bytes, new: bytes, still_valid: bool
) -> None:
    signed = signer.sign(_message())
    assert signed.count(old) == 1, old
    changed = signed.replace(old, new)
    assert changed != signed
    assert dkim.verify(changed, dnsfunc=_dns()) is still_valid


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a key at all", id="garbage"),
        pytest.param(b"\x00\xff\xfe" * 40, id="binary"),
        pytest.param(
            b"-----BEGIN RSA PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END RSA PRIVATE KEY-----\n",
            id="pem-garbage",
        ),
        pytest.param(KEY_PEM[: len(KEY_PEM) // 2], id="truncated-pem"),
        pytest.param(
            RSA_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            id="public-key",
        ),
        pytest.param(_pem(ec.generate_private_key(ec.SECP256R1()), None), id="ec-key"),
        pytest.param(_pem(RSA_KEY, b"passphrase"), id="encrypted-rsa"),
        pytest.param(
            RSA_KEY.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            id="der-not-pem",
        ),
    ],
)
def test_a_key_that_cannot_sign_is_a_config_error(key: bytes) -> None:
    with pytest.raises(ConfigError, match=r"dkim\.key_file: the key cannot sign"):
        DkimSigner(SELECTOR, DOMAIN, key, DKIM_HEADERS)


def test_key_error_message_is_one_line() -> None:
    public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError) as err:
        DkimSigner(SELECTOR, DOMAIN, public, DKIM_HEADERS)
    assert "\n" not in str(err.value)


def test_pkcs8_key_signs_too() -> None:
    signer = DkimSigner(SELECTOR, DOMAIN, _pem(RSA_KEY, None), DKIM_HEADERS)
    assert dkim.verify(signer.sign(_message()), dnsfunc=_dns())


# ---- the [dkim] config section ---------------------------------------------------------


def _dkim_config(tmp_path: Path, section: str) -> Path:
    return write_config(tmp_path, 2525, extra=section)


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ('[dkim]\nkey_file = "dkim.pem"\n', "set all three or none"),
        ('[dkim]\nkey_file = "dkim.pem"\ndomain = "example.org"\n', "set all three or none"),
        ('[dkim]\nkey_file = "dkim.pem"\nselector = "s1"\n', "set all three or none"),
        ('[dkim]\nselector = "s1"\ndomain = "example.org"\n', "set all three or none"),
        (
            '[dkim]\nselector = "s1"\ndomain = "example.org"\nkey_file = "k"\n'
            'headers = ["From", "To", "Subject", "List-Unsubscribe-Post"]\n',
            "must include list-unsubscribe",
        ),
        (
            '[dkim]\nselector = "s1"\ndomain = "example.org"\nkey_file = "k"\n'
            'headers = ["From", "List-Unsubscribe"]\n',
            "must include list-unsubscribe-post",
        ),
        ('[dkim]\nheaders = ["Subject", "List-Unsubscribe", "List-Unsubscribe-Post"]\n', "from"),
        ('[dkim]\nselector = "bad selector"\n', "dkim.selector"),
        ('[dkim]\ndomain = "exa mple.org"\n', "dkim.domain"),
        ('[dkim]\nkey = "inline-key"\n', "unknown key dkim.key"),
    ],
)
def test_incomplete_or_unsafe_dkim_section_is_a_config_error(
    tmp_path: Path, section: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_dkim_config(tmp_path, section))
    message = str(err.value)
    assert "dkim" in message
    assert fragment in message


def test_dkim_section_from_config_signs_and_verifies(tmp_path: Path) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(KEY_PEM)
    key_file.chmod(0o600)
    config = load_config(
        _dkim_config(
            tmp_path,
            f'[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "dkim.pem"\n'
            'headers = ["from", "subject", "list-unsubscribe", "list-unsubscribe-post"]\n',
        )
    )
    assert config.dkim.enabled
    signer = dkim_signer(config)
    assert signer is not None
    signed = signer.sign(_message())
    assert dkim.verify(signed, dnsfunc=_dns())
    assert (
        _signed_headers(signed)
        == [
            b"from",
            b"subject",
            b"list-unsubscribe",
            b"list-unsubscribe-post",
        ]
        * 2
    )  # oversigned: each listed twice
    assert not dkim.verify(signed.replace(UNSUB_LINE, UNSUB_LINE + b"x"), dnsfunc=_dns())


def test_an_added_list_unsubscribe_breaks_the_signature() -> None:
    """Oversigning: a second List-Unsubscribe added in transit cannot ride on the
    signature (a forwarder could otherwise point one-click at a URL of its own)."""
    signed = DkimSigner(SELECTOR, DOMAIN, KEY_PEM, DKIM_HEADERS).sign(_message())
    assert dkim.verify(signed, dnsfunc=_dns())
    extra = b"List-Unsubscribe: <https://evil.example/u>\r\n"
    assert not dkim.verify(extra + signed, dnsfunc=_dns())


def test_no_dkim_section_means_no_signer(tmp_path: Path) -> None:
    config = load_config(_dkim_config(tmp_path, ""))
    assert not config.dkim.enabled
    assert dkim_signer(config) is None


def test_unusable_key_file_fails_when_the_signer_is_made(tmp_path: Path) -> None:
    (tmp_path / "dkim.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nnope\n")
    (tmp_path / "dkim.pem").chmod(0o600)
    config = load_config(
        _dkim_config(
            tmp_path,
            f'[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "dkim.pem"\n',
        )
    )
    with pytest.raises(ConfigError, match=r"dkim\.key_file"):
        dkim_signer(config)


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        (DKIM_HEADERS, True),
        (["FROM", "LIST-UNSUBSCRIBE", "list-unsubscribe-post"], True),
        (["From", "To", "Subject", "List-Unsubscribe-Post"], False),
        (["From", "List-Unsubscribe"], False),
        (["List-Unsubscribe", "List-Unsubscribe-Post"], False),
        ([], False),
    ],
)
def test_dkim_section_headers_must_cover_from_and_unsubscribe(headers: list[str], ok: bool) -> None:
    if ok:
        assert DkimSection(headers=headers).headers == headers
    else:
        with pytest.raises(ValidationError, match="must include"):
            DkimSection(headers=headers)
