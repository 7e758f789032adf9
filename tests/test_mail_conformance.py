"""Wire conformance of ``build_message`` under hostile data: RFC 5322 line limits, CRLF only,
exactly the expected headers (each once, nothing injectable), and content that decodes back
to what went in; plus table tests of the header helpers."""

from __future__ import annotations

import re
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from smtp_faults import REQUIRED

from conftest import NOW
from newsletter.mail import (
    FOLD,
    ListHeaders,
    address_header,
    build_message,
    header_safe,
    list_id_for,
    list_id_header,
    unstructured,
)
from newsletter.models import RenderedEmail
from newsletter.render_cache import crlf

HEADERS = ListHeaders(
    "Digest <digest@example.org>",
    list_id_for("Digest", "example.org"),
    "https://d.example/unsubscribe/TOKEN",
    "unsubscribe@example.org",
)
EXPECTED_HEADERS = sorted([*REQUIRED, "Content-Type"])
INJECT = "\r\nBcc: victim@evil.example\r\nCc: other@evil.example"

# (subject, display name, recipient, html, text)
CASES: dict[str, tuple[str, str, str, str, str]] = {
    "plain": ("Today's papers", "Reader", "reader@example.org", "<p>hi</p>", "hi\n"),
    "crlf-injection": (
        "Hi" + INJECT,
        "Eve" + INJECT,
        "reader@example.org",
        "<p>x</p>",
        "x",
    ),
    "lf-cr-nul": ("a\nb\rc\x00d\x7fe\tf", "n\na\rm\x00e", "r@example.org", "<p>x</p>", "x"),
    "encoded-word-lookalike": (
        "=?utf-8?q?=0A?=Bcc: x@evil.example",
        "=?utf-8?q?=0ABcc:_x@evil.example?=",
        "r@example.org",
        "<p>=?utf-8?q?=0A?=</p>",
        "=?utf-8?q?=0A?=",
    ),
    "huge-subject-words": ("word " * 1000, "N" * 5000, "r@example.org", "<p>x</p>", "x"),
    "huge-subject-one-word": ("s" * 5000, "Name", "r@example.org", "<p>x</p>", "x"),
    "huge-non-ascii-subject": ("ü" * 5000, "Zoë " * 1000, "r@example.org", "<p>x</p>", "x"),
    "non-ascii": (
        "Ünïcode títles — naïve café",
        "Zoë Ä. Müller",
        "r@example.org",
        "<p>Zoë — ünïcode</p>",
        "Zoë — ünïcode\n",
    ),
    "emoji": ("🚀 Launch 🤖 day 👩‍🔬", "🦊 Fox", "r@example.org", "<p>🚀</p>", "🚀🤖\n"),
    "quotes-and-backslashes": (
        'He said "hi" \\ bye',
        'O\'Brien, "The \\Boss\\" <boss@evil.example>',
        "r@example.org",
        "<p>x</p>",
        "x",
    ),
    "non-ascii-recipient": ("Für dich", "Ünï", "ünï@exämple.org", "<p>ü</p>", "ü\n"),
    "html-200kb-one-line": (
        "Big",
        "Reader",
        "r@example.org",
        "<p>" + ("x=é <b>y</b> " * 20_000)[:200_000] + "</p>",
        "t",
    ),
    "text-lone-cr-and-mixed-ends": (
        "Ends",
        "Reader",
        "r@example.org",
        "<p>a</p>\r<p>b</p>\r\n<p>c</p>\n",
        "one\rtwo\r\nthree\nfour\r\r\n\nfive",
    ),
    "dots-and-from": (
        ".",
        ".",
        "r@example.org",
        ".\n..\n.\r\nFrom x\n",
        ".\n.\r\n..\nFrom someone\n.",
    ),
    "only-controls": ("\r\n\x00", "\r\n", "r@example.org", "", ""),
}


def _build(case: tuple[str, str, str, str, str]) -> bytes:
    subject, name, to_addr, html, text = case
    return build_message(
        RenderedEmail(subject, html, text),
        to_name=name,
        to_addr=to_addr,
        headers=HEADERS,
        msg_id="<20261124.abc@example.org>",
        now=NOW,
    )


def _parse(raw: bytes) -> EmailMessage:
    """Bytes parsing keeps non-ASCII header bytes as surrogates; an RFC 6532 (UTF-8)
    header block is parsed as text instead."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    if head.isascii():
        msg = message_from_bytes(raw, policy=policy.default)
    else:
        msg = message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in (" ", "\t")]


def _raw_header(raw: bytes, name: str) -> str:
    """A header's value as written, unfolded."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8").replace("\r\n ", " ")
    [value] = [v for n, _, v in (line.partition(":") for line in head.split("\r\n")) if n == name]
    return value


def _display_name(header_value: str) -> str:
    """The display name of ``name <addr>`` decoded as RFC 2047 6.2 says: whitespace between
    adjacent encoded-words is ignored. (Python's address parser keeps it, so a long name
    split across encoded-words would read with extra spaces.)"""
    phrase = header_value.rpartition(" <")[0].lstrip()
    return str(make_header(decode_header(phrase)))


def _decoded(cleaned: str, got: str) -> bool:
    """ASCII text travels as words (runs of spaces fold to one); non-ASCII as encoded-words,
    exactly."""
    if cleaned.isascii():
        return got == " ".join(cleaned.split())
    return got == cleaned


CASE_IDS = list(CASES)


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_lines_and_line_ends(case: tuple[str, str, str, str, str]) -> None:
    raw = _build(case)
    lines = raw.split(b"\r\n")
    assert lines[-1] == b""  # ends with CRLF
    assert max(len(line) for line in lines) <= 998
    rest = raw.replace(b"\r\n", b"")
    assert b"\r" not in rest and b"\n" not in rest
    assert b"\x00" not in raw


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_exactly_the_expected_headers(case: tuple[str, str, str, str, str]) -> None:
    raw = _build(case)
    assert sorted(_header_names(raw)) == EXPECTED_HEADERS
    msg = message_from_bytes(raw, policy=policy.default)
    assert sorted(msg.keys()) == EXPECTED_HEADERS
    assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert not re.search(rb"(^|\r\n)(bcc|cc)\s*:", head)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == "<20261124.abc@example.org>"
    assert msg["Date"].datetime == NOW
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_subject_and_recipient_decode_to_the_cleaned_input(
    case: tuple[str, str, str, str, str],
) -> None:
    subject, name, to_addr, _, _ = case
    raw = _build(case)
    msg = _parse(raw)
    clean_subject = header_safe(subject, 250)
    assert "\n" not in clean_subject and "=?" not in clean_subject
    assert _decoded(clean_subject, str(msg["Subject"])), (msg["Subject"], clean_subject)
    [address] = msg["To"].addresses
    clean_name = header_safe(name, 200)
    if clean_name.isascii():  # atoms or a quoted string
        assert _decoded(clean_name, address.display_name), address.display_name
    else:  # encoded-words
        assert _display_name(_raw_header(raw, "To")) == clean_name
    assert address.addr_spec == to_addr
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_parts_decode_to_the_input(case: tuple[str, str, str, str, str]) -> None:
    _, _, _, html, text = case
    msg = _parse(_build(case))
    for subtype, original in (("plain", text), ("html", html)):
        part = msg.get_body((subtype,))
        assert part is not None
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        content = part.get_content()
        assert isinstance(content, str)
        # line ends as LF; the part's last CRLF belongs to the boundary (RFC 2046 5.1.1)
        assert content.replace("\r\n", "\n") + "\n" == crlf(original).replace("\r\n", "\n")


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_header_block_is_ascii_unless_the_address_is_not(
    case: tuple[str, str, str, str, str],
) -> None:
    raw = _build(case)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.isascii() is case[2].isascii()
    assert body.isascii()  # quoted-printable parts
    if not head.isascii():  # only the address itself is raw UTF-8, in the To line
        [line] = [line for line in head.split(b"\r\n") if not line.isascii()]
        assert line.startswith(b"To: ") and line.endswith(f" <{case[2]}>".encode())
        assert line.removesuffix(f" <{case[2]}>".encode()).isascii()


ASCII_ADDRESS = {k: v for k, v in CASES.items() if v[2].isascii()}


@pytest.mark.parametrize("case", ASCII_ADDRESS.values(), ids=ASCII_ADDRESS.keys())
def test_no_parser_defects(case: tuple[str, str, str, str, str]) -> None:
    msg = message_from_bytes(_build(case), policy=policy.default)
    assert [d for part in msg.walk() for d in part.defects] == []
    for header in ("Subject", "To", "From", "List-Id", "List-Unsubscribe"):
        assert not msg[header].defects, header


# ---- header helpers ------------------------------------------------------------------------


def _lines(header: str) -> list[str]:
    assert "\n" not in header.replace("\r\n", "")
    assert "\r" not in header.replace("\r\n", "")
    lines = header.split("\r\n")
    assert all(line.startswith((" ", "\t")) for line in lines[1:])  # continuation lines
    return lines


TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\S+')  # a quoted string is one token


def _folded_where_possible(lines: list[str]) -> bool:
    """Every line within FOLD, unless it holds a single token too long to fold."""
    for i, line in enumerate(lines):
        tokens = TOKEN.findall(line if i else line.partition(":")[2])
        if len(line) > FOLD and len(tokens) > 1:
            return False
    return True


def _parsed(header: str) -> str:
    msg = message_from_string(header + "\r\n\r\n", policy=policy.default)
    return str(msg[header.split(":", 1)[0]])


UNSTRUCTURED = {
    "short": ("Hello", "Hello", 1),
    "words-fold": ("word " * 60, " ".join(["word"] * 60), 5),  # 14 + 15 + 15 + 15 + 1
    "one-long-word": ("x" * 500, "x" * 500, 1),
    "limit": ("y" * 2000, "y" * 900, 1),
    "controls": ("a\r\nb\x00c", "a b c", 1),
    "encoded-word-lookalike": ("=?utf-8?q?=0A?=", "= ?utf-8?q?=0A?=", 1),
    "short-non-ascii": ("Grüße", "Grüße", 1),
    "empty": ("", "", 1),
}


@pytest.mark.parametrize(
    ("value", "decoded", "count"), UNSTRUCTURED.values(), ids=UNSTRUCTURED.keys()
)
def test_unstructured(value: str, decoded: str, count: int) -> None:
    header = unstructured("Subject", value)
    lines = _lines(header)
    assert len(lines) == count
    assert all(len(line.encode()) <= 998 for line in lines)
    assert _folded_where_possible(lines)
    assert header.isascii()
    assert _parsed(header) == decoded


@pytest.mark.parametrize(
    "value", ["é" * 100, "Ünïcode " * 30, "🚀" * 40], ids=["accents", "words", "emoji"]
)
def test_unstructured_non_ascii_decodes_and_stays_within_998(value: str) -> None:
    header = unstructured("Subject", value)
    lines = _lines(header)
    assert header.isascii()
    assert all(len(line) <= 998 for line in lines)
    assert all(len(line) <= FOLD for line in lines[1:])
    assert _parsed(header) == header_safe(value)


REAL_TITLE = "Ünïcode títles and émoji 🚀 in large language models + 3 more"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(unstructured("Subject", "é" * 100), id="subject"),
        pytest.param(unstructured("Subject", REAL_TITLE), id="subject-paper-title"),
        pytest.param(list_id_header(f"{'Ü' * 60} <u.example.org>"), id="list-id"),
    ],
)
def test_non_ascii_first_line_folds_at_78(header: str) -> None:
    assert all(len(line) <= FOLD for line in _lines(header))


def test_built_message_header_lines_fold_at_78_for_a_non_ascii_title() -> None:
    raw = _build((REAL_TITLE, "Zoë", "r@example.org", "<p>x</p>", "x"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert [line for line in head.split(b"\r\n") if len(line) > FOLD] == []


ADDRESSES = {
    "plain": ("Reader", "r@example.org", "To: Reader <r@example.org>"),
    "no-name": ("", "r@example.org", "To: <r@example.org>"),
    "controls-only-name": ("\r\n\x00", "r@example.org", "To: <r@example.org>"),
    "specials": ("Doe, Jane", "j@example.org", 'To: "Doe, Jane" <j@example.org>'),
    "quotes": ('a "b" \\c', "q@example.org", 'To: "a \\"b\\" \\\\c" <q@example.org>'),
    "angle-brackets-in-address": ("X", "<x@example.org>\r\n", "To: X <x@example.org>"),
    "spaces-in-address": ("X", " x @example.org ", "To: X <x@example.org>"),
    "non-ascii-name": ("Zoë", "z@example.org", "To: =?utf-8?b?Wm/Dqw==?= <z@example.org>"),
    "eai": ("", "ünï@exämple.org", "To: <ünï@exämple.org>"),
}


@pytest.mark.parametrize(("name", "addr", "expected"), ADDRESSES.values(), ids=ADDRESSES.keys())
def test_address_header(name: str, addr: str, expected: str) -> None:
    header = address_header("To", name, addr)
    assert header == expected
    assert len(_lines(header)) == 1


@pytest.mark.parametrize(
    "name",
    ["Word " * 100, "Ünïcode Nàme " * 40, '"quoted, long" ' * 30, "x" * 500],
    ids=["words", "non-ascii", "quoted", "one-word"],
)
def test_address_header_long_names(name: str) -> None:
    header = address_header("From", name, "sender@example.org")
    lines = _lines(header)
    assert all(len(line.encode()) <= 998 for line in lines)
    assert lines[-1].endswith("<sender@example.org>")
    msg = message_from_string(header + "\r\n\r\n", policy=policy.default)
    [address] = msg["From"].addresses
    assert address.addr_spec == "sender@example.org"
    clean = header_safe(name, 200)
    if clean.isascii():
        assert _decoded(clean, address.display_name)
    else:
        assert _display_name(header.partition(":")[2].replace("\r\n ", " ")) == clean
    assert _folded_where_possible(lines)


LIST_IDS = {
    "plain": ("Digest <digest.example.org>", "List-Id: Digest <digest.example.org>"),
    "bare": ("digest.example.org", "List-Id: <digest.example.org>"),
    "bracketed-only": ("<digest.example.org>", "List-Id: <digest.example.org>"),
    "specials": ("A, B: C <abc.example.org>", 'List-Id: "A, B: C" <abc.example.org>'),
    "injection": (
        "Digest\r\nBcc: x@evil.example <d.example.org>",
        'List-Id: "Digest Bcc: x@evil.example" <d.example.org>',
    ),
    "from-list-id-for": (list_id_for("AI & ML Weekly!", "example.org"), None),
    "non-ascii": ("Zoë <z.example.org>", "List-Id: =?utf-8?b?Wm/Dqw==?= <z.example.org>"),
}


@pytest.mark.parametrize(("list_id", "expected"), LIST_IDS.values(), ids=LIST_IDS.keys())
def test_list_id_header(list_id: str, expected: str | None) -> None:
    header = list_id_header(list_id)
    if expected is not None:
        assert header == expected
    lines = _lines(header)
    assert all(len(line.encode()) <= 998 for line in lines)
    assert header.isascii()
    assert re.search(r"<[^<>\s]+>$", header)


def test_list_id_for() -> None:
    assert list_id_for("AI & ML Weekly!", "example.org") == (
        "AI & ML Weekly! <ai-ml-weekly.example.org>"
    )
    assert list_id_for("!!!", "example.org") == "!!! <digest.example.org>"
    assert list_id_header(list_id_for("AI & ML Weekly!", "example.org")) == (
        "List-Id: AI & ML Weekly! <ai-ml-weekly.example.org>"
    )


def test_long_list_id_folds() -> None:
    header = list_id_header("word " * 50 + "<w.example.org>")
    lines = _lines(header)
    assert len(lines) > 1
    assert all(len(line) <= FOLD for line in lines)
    assert lines[-1].endswith("<w.example.org>")
