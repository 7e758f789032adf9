"""Untrusted feed text: clean_text, safe_url, clean_list, decode_tex."""

from __future__ import annotations

import pytest

from newsletter.sources.text import (
    MAX_ABSTRACT,
    MAX_URL,
    clean_list,
    clean_text,
    decode_tex,
    safe_url,
)

# --------------------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # tags dropped
        ("<b>Bold</b> title", "Bold title"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ("<img src=x onerror=alert(1)>Caption", "Caption"),
        # entities decoded
        ("A &amp; B", "A & B"),
        ("caf&eacute; &#233; &#xE9;", "café é é"),
        ("p &lt; 0.05", "p < 0.05"),
        ("&quot;quoted&quot; &apos;x&apos;", "\"quoted\" 'x'"),
        ("non&nbsp;breaking", "non\xa0breaking".replace("\xa0", " ")),
        # whitespace folded
        ("  lots   of\n\n  space\t here  ", "lots of space here"),
        ("line\r\nbreaks", "line breaks"),
        # control characters stripped
        ("a\x00b\x07c\x1bd\x7fe", "abcde"),
        ("bell\x08\x0b\x0cend", "bellend"),
        # None and non-strings
        (None, ""),
        (42, "42"),
        ("", ""),
        ("plain text", "plain text"),
        # a lone "<" that is not part of a tag is kept
        ("p < 0.0001 for segmentation", "p < 0.0001 for segmentation"),
        ("V_max<17.5. Hence", "V_max<17.5. Hence"),
    ],
)
def test_clean_text(value: object, expected: str) -> None:
    assert clean_text(value, 1000) == expected


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>Title",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>Title",
        "<svg onload=alert(1)>Title",
        "<iframe src='javascript:alert(1)'></iframe>Title",
        "Title<script\n>alert(1)</script\n>",
    ],
)
def test_clean_text_drops_markup(value: str) -> None:
    out = clean_text(value, 1000)
    assert "<" not in out
    assert ">" not in out
    assert "Title" in out


def test_clean_text_script_example_from_brief() -> None:
    out = clean_text("<script>alert(1)</script>Title", 500)
    assert "<" not in out
    assert out.endswith("Title")


@pytest.mark.parametrize("limit", [10, 50, 100, 500])
def test_clean_text_bounds_length_at_a_word(limit: int) -> None:
    text = "word " * 1000
    out = clean_text(text, limit)
    assert len(out) <= limit
    assert out.endswith("…")
    # cut at a word boundary: every remaining word is whole
    assert all(w == "word" for w in out[:-1].split())


def test_clean_text_bounds_length_without_spaces() -> None:
    out = clean_text("x" * 20_000, 100)
    assert len(out) == 100
    assert out == "x" * 99 + "…"


def test_clean_text_at_limit_is_untouched() -> None:
    assert clean_text("a" * 100, 100) == "a" * 100
    assert clean_text("a" * 101, 100).endswith("…")


def test_clean_text_abstract_limit() -> None:
    out = clean_text("lorem ipsum " * 5000, MAX_ABSTRACT)
    assert 0 < len(out) <= MAX_ABSTRACT
    assert out.endswith("…")


def test_clean_text_bound_applies_after_tag_removal() -> None:
    # markup does not count against the limit: only the visible text does
    out = clean_text("<span>" * 50 + "short", 20)
    assert out == "short"


def test_clean_text_keeps_inequalities_that_are_not_tags() -> None:
    text = "for $0 < \\alpha < 1$ and $\\beta > 2$ we show"
    assert clean_text(text, 1000) == text


# --------------------------------------------------------------------------- safe_url


@pytest.mark.parametrize(
    "url",
    [
        "https://arxiv.org/abs/2604.21935",
        "http://biorxiv.org/cgi/content/short/2023.12.16.571984v1?rss=1",
        "https://github.com/org/repo",
        "HTTPS://EXAMPLE.COM/Path",
        "https://example.com:8443/x?y=1#frag",
        "https://[2001:db8::1]/x",
    ],
)
def test_safe_url_accepts_http_and_https(url: str) -> None:
    assert safe_url(url) == url


def test_safe_url_strips_surrounding_whitespace() -> None:
    assert safe_url("  https://example.com/x \n") == "https://example.com/x"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "  javascript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "/relative/path",
        "relative/path",
        "//example.com/protocol-relative",
        "https://",
        "http:///nohost",
        "https://user:pass@host/",
        "https://user@host/",
        "https://:pass@host/",
        "https://exa mple.com/",
        "https://example.com/a b",
        "https://example.com/a\nb",
        "https://example.com/a\rb",
        "https://example.com/\x00",
        "https://example.com/\x1b[31m",
        "",
        "   ",
        "https://example.com/" + "a" * MAX_URL,
    ],
)
def test_safe_url_rejects(url: str) -> None:
    assert safe_url(url) is None


@pytest.mark.parametrize("value", [None, 42, b"https://example.com/", ["https://example.com/"]])
def test_safe_url_rejects_non_strings(value: object) -> None:
    assert safe_url(value) is None


def test_safe_url_rejects_embedded_tab() -> None:
    assert safe_url("https://example.com/a\tb") is None


# --------------------------------------------------------------------------- clean_list


def test_clean_list_cleans_drops_empties_and_bounds() -> None:
    values = ["<b>alpha</b>", "", "   ", None, "beta  gamma", "x" * 50, "delta", "epsilon"]
    out = clean_list(values, 6, 10)
    assert out == ("alpha", "beta gamma", "x" * 9 + "…")
    assert isinstance(out, tuple)


@pytest.mark.parametrize("value", [None, "a,b", {"a": 1}, 3])
def test_clean_list_rejects_non_sequences(value: object) -> None:
    assert clean_list(value, 10, 10) == ()


def test_clean_list_accepts_tuples() -> None:
    assert clean_list(("a", "b", "c"), 2, 10) == ("a", "b")


# --------------------------------------------------------------------------- decode_tex


@pytest.mark.parametrize(
    ("tex", "expected"),
    [
        ("Andr\\'e", "André"),
        ("Andr\\'{e}", "André"),
        ("Andr{\\'e}", "André"),
        ('{\\"o}', "ö"),
        ('G\\"odel', "Gödel"),
        ('Sch\\"{o}lkopf', "Schölkopf"),
        ("\\c{c}", "ç"),
        ("Fran\\c{c}ois", "François"),
        ("Erd\\H{o}s", "Erdős"),
        ("\\`a la", "à la"),
        ("\\^o", "ô"),
        ("Nu\\~nez", "Nuñez"),
        ("\\v{s}", "š"),
        ("Dvo\\v{r}\\'ak", "Dvořák"),
        ("\\u{a}", "ă"),
        ("\\r{a}", "å"),
        ("\\k{a}", "ą"),
        ("\\={a}", "ā"),
        ("\\.{z}", "ż"),
        ("\\'{\\i}", "í"),
        ("{\\o}", "ø"),
        ("{\\ss}", "ß"),
        ("{\\L}ukasz", "Łukasz"),
        ("{\\aa}", "å"),
        ("{\\AE}", "Æ"),
        # plain text is unchanged
        ("Plain Name", "Plain Name"),
        ("Zoë Ångström", "Zoë Ångström"),
        ("", ""),
    ],
)
def test_decode_tex(tex: str, expected: str) -> None:
    assert decode_tex(tex) == expected


def test_decode_tex_does_not_touch_other_macros() -> None:
    # \log and \omega are not letter macros: \l and \o must not match inside them
    assert decode_tex("\\log \\omega") == "\\log \\omega"


def test_decode_tex_consumes_control_word_space() -> None:
    assert decode_tex("Bj\\o rn") == "Bjørn"


def test_decode_tex_drops_empty_group_after_letter_macro() -> None:
    assert decode_tex("Stra\\ss{}e") == "Straße"
