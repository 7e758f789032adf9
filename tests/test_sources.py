"""Source parsers against real captured feeds, hostile inline input, fetching and merging.

The captured feeds are read from ../shared/fixtures (see SOURCES.md there); they are never
copied into the repository. Tests that need them are skipped when that folder is absent.
"""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources import (
    SourceOutcome,
    SourceSpec,
    arxiv_api,
    arxiv_rss,
    collect_one,
    feed,
    hf_daily,
)
from newsletter.sources.base import ParseResult
from newsletter.sources.fetch import FetchResult, HttpFetcher, Validators
from newsletter.sources.merge import merge_paper
from newsletter.sources.text import MAX_ABSTRACT

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"captured feeds not found at {FIXTURES} (../shared/fixtures)"
)

Parser = Callable[[bytes, str], ParseResult]

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"

# Item counts from SOURCES.md.
ARXIV_RSS_COUNTS = {
    "cs.LG_2026-04-27_trimmed3.xml": 3,
    "cs.AI_2026-04-27_trimmed3.xml": 3,
    "cs.CL_2026-04-27_trimmed3.xml": 3,
    "cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed4.xml": 4,
}
ARXIV_API_COUNTS = {
    "search_au-del_maestro_2016-10-09.xml": 10,
    "id_list-1111.2011v2_2016-10.xml": 1,
    "search_deep-dream_start0_2017-05-14.atom.xml": 10,
    "search_deep-dream_start10_2017-05-14.atom.xml": 10,
    "query_cat-cs.LG-OR-cs.AI_m20_2026-04-30.xml": 20,
    "query_all-retrieval_m15_2026-08-21.xml": 15,
    "recorded_q-testing_m10_2026-04-12.json": 10,
    "recorded_id-astro-ph-0601001_2026-05-11.json": 1,
    "recorded_id-0808.05394-1707.08567_2026-04-12.json": 1,
    "recorded_id-0000.0000_empty_2026-04-12.json": 0,
}
ARXIV_API_ERROR = "recorded_id-abc_error400_2026-04-12.json"
HF_DAILY_COUNTS = {
    "daily_papers_2024-03-27.raw.json": 9,
    "daily_papers_2024-04-04.raw.json": 8,
    "daily_papers_2024-05-27.json": 13,
    "daily_papers_2024-12-02.json": 15,
    "daily_papers_2025-06-02.json": 20,
    "daily_papers_2025-10-01.json": 37,
    "daily_papers_2026-07-15.json": 2,
    "daily_papers_2026-08-21.json": 17,
}
# file -> (entries in SOURCES.md, papers expected, bozo)
OTHER_FEEDS = {
    "biorxiv_genomics_rss1.0_2023-12-16.xml": (1, 1, False),
    "golem_rss1.0_iso-8859-1.xml": (1, 1, False),
    # one of the 10 real items is empty (<title></title><link></link>): it is skipped
    "cercle-psy_rss2.0_no-xml-decl_iso-8859-1_bozo.xml": (10, 9, True),
    "db-engines-blog_rss2.0_undefined-entity_bozo.xml": (1, 1, True),
    "takara_tldr_hf-daily-papers_rss_2026-04-30.xml": (50, 50, False),
    "hf-daily-papers_feedgen-mirror_rss_2026-04-30.xml": (22, 22, False),
}


def fixture(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


def api_body(path: Path) -> bytes:
    """The Atom bytes of an arxiv-api fixture: raw XML, or the body of a recorded JSON."""
    data = path.read_bytes()
    if path.suffix == ".json":
        body: str = json.loads(data)["body"]
        return body.encode()
    return data


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- fixture coverage


@needs_fixtures
@pytest.mark.parametrize(
    ("folder", "table", "suffixes"),
    [
        ("arxiv-rss", ARXIV_RSS_COUNTS, (".xml",)),
        ("arxiv-api", {**ARXIV_API_COUNTS, ARXIV_API_ERROR: 1}, (".xml", ".json")),
        ("hf-daily-papers", HF_DAILY_COUNTS, (".json",)),
        ("other", OTHER_FEEDS, (".xml",)),
    ],
)
def test_every_fixture_file_is_covered(
    folder: str, table: dict[str, object], suffixes: tuple[str, ...]
) -> None:
    on_disk = {p.name for p in fixture(folder).iterdir() if p.suffix in suffixes}
    assert on_disk == set(table), "a fixture file was added or removed: update the tables"


# --------------------------------------------------------------------------- arxiv-rss


@needs_fixtures
@pytest.mark.parametrize(("name", "count"), sorted(ARXIV_RSS_COUNTS.items()))
def test_arxiv_rss_fixture(name: str, count: int) -> None:
    path = fixture("arxiv-rss", name)
    result = arxiv_rss.parse(path.read_bytes(), "arxiv-rss")
    assert len(result.papers) == count
    assert result.skipped == 0
    assert result.warnings == []

    items = ET.fromstring(path.read_bytes()).findall("./channel/item")
    assert len(items) == count
    for paper, item in zip(result.papers, items, strict=True):
        guid = item.findtext("guid", "")
        m = re.fullmatch(r"oai:arXiv\.org:(.+)v(\d+)", guid)
        assert m, guid
        assert paper.id == m.group(1)
        assert "v" not in paper.id.split(".")[-1]  # versionless
        assert isinstance(paper.version, int) and paper.version == int(m.group(2))
        assert paper.source == "arxiv-rss"
        assert paper.title and paper.title == fold(item.findtext("title", ""))

        raw_description = item.findtext("description", "")
        assert raw_description.startswith("arXiv:")  # the prefix is really there...
        assert not paper.abstract.startswith("arXiv:")  # ...and is removed
        assert "Announce Type" not in paper.abstract
        assert not paper.abstract.startswith("Abstract:")
        assert paper.abstract == fold(raw_description.split("Abstract:", 1)[1])

        creator = item.findtext(f"{DC}creator", "")
        assert isinstance(paper.authors, tuple)
        assert list(paper.authors) == [n.strip() for n in creator.split(",") if n.strip()]
        assert paper.authors

        assert list(paper.categories) == [c.text for c in item.findall("category")]
        assert paper.categories
        assert paper.announce_type in {"new", "cross", "replace", "replace-cross"}
        assert paper.announce_type == item.findtext(f"{ARXIV}announce_type")
        assert paper.url == f"https://arxiv.org/abs/{paper.id}"
        assert paper.published is not None and paper.published.tzinfo is not None


@needs_fixtures
def test_arxiv_rss_combined_feed_announce_types_and_versions() -> None:
    path = fixture("arxiv-rss", "cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed4.xml")
    papers = arxiv_rss.parse(path.read_bytes(), "combined").papers
    assert Counter(p.announce_type for p in papers) == {"new": 2, "cross": 1, "replace": 1}
    by_id = {p.id: p for p in papers}
    assert by_id["2205.06398"].announce_type == "cross"
    assert by_id["2205.06398"].version == 2
    assert by_id["2009.13987"].announce_type == "replace"
    assert by_id["2009.13987"].version == 3
    # a name with a double space in dc:creator ("Ratna Kandala,  Deepti") is still split right
    cl = arxiv_rss.parse(fixture("arxiv-rss", "cs.CL_2026-04-27_trimmed3.xml").read_bytes(), "cl")
    assert cl.papers[0].authors[:3] == ("Anamta Khan", "Ratna Kandala", "Deepti")


def _rss(items: str, extra_ns: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:arxiv="http://arxiv.org/schemas/atom" {extra_ns}>
<channel><title>Inline test feed</title><link>https://example.org/</link>
<description>inline</description>
{items}
</channel></rss>""".encode()


def test_arxiv_rss_announce_type_from_prefix_and_author_splitting() -> None:
    data = _rss("""
<item>
  <title>A replace-cross paper</title>
  <link>https://arxiv.org/abs/2604.00001</link>
  <description>arXiv:2604.00001v4 Announce Type: replace-cross\x20
Abstract: The real abstract.</description>
  <guid isPermaLink="false">oai:arXiv.org:2604.00001v4</guid>
  <category>math.CO</category>
  <dc:creator>Ana Bel\\'en, Bob Smith, and Carl Erd\\H{o}s</dc:creator>
</item>
<item>
  <title>No arXiv id anywhere</title>
  <link>https://example.org/not-arxiv</link>
  <description>x</description>
  <guid isPermaLink="false">urn:uuid:1234</guid>
</item>""")
    result = arxiv_rss.parse(data, "inline")
    assert result.skipped == 1
    [paper] = result.papers
    assert paper.id == "2604.00001" and paper.version == 4
    assert paper.announce_type == "replace-cross"  # no arxiv:announce_type element: from prefix
    assert paper.abstract == "The real abstract."
    assert paper.authors == ("Ana Belén", "Bob Smith", "Carl Erdős")
    assert paper.categories == ("math.CO",)


# --------------------------------------------------------------------------- arxiv-api


@needs_fixtures
@pytest.mark.parametrize(("name", "count"), sorted(ARXIV_API_COUNTS.items()))
def test_arxiv_api_fixture(name: str, count: int) -> None:
    body = api_body(fixture("arxiv-api", name))
    result = arxiv_api.parse(body, "arxiv-api")
    assert len(result.papers) == count
    assert result.skipped == 0

    entries = ET.fromstring(body).findall(f"{ATOM}entry")
    assert len(entries) == count
    for paper, entry in zip(result.papers, entries, strict=True):
        raw_id = entry.findtext(f"{ATOM}id", "")
        m = re.search(r"/abs/(.+)v(\d+)$", raw_id)
        assert m, raw_id
        assert paper.id == m.group(1)
        assert paper.version == int(m.group(2))
        assert paper.title
        assert paper.abstract
        assert paper.authors == tuple(
            fold(a.findtext(f"{ATOM}name", "")) for a in entry.findall(f"{ATOM}author")
        )
        primary = entry.find(f"{ARXIV}primary_category")
        assert primary is not None
        assert paper.categories[0] == primary.get("term")
        assert set(paper.categories) == {c.get("term") for c in entry.findall(f"{ATOM}category")}
        assert len(paper.categories) == len(set(paper.categories))
        assert paper.pdf_url == f"https://arxiv.org/pdf/{paper.id}"


@needs_fixtures
def test_arxiv_api_specific_records() -> None:
    old_path = fixture("arxiv-api", "recorded_id-astro-ph-0601001_2026-05-11.json")
    old = arxiv_api.parse(api_body(old_path), "a")
    assert old.papers[0].id == "astro-ph/0601001"
    assert old.papers[0].categories[0] == "astro-ph"
    # a lone "<" in a real abstract survives cleaning
    assert "V_max<17.5" in old.papers[0].abstract

    two = arxiv_api.parse(
        api_body(fixture("arxiv-api", "recorded_id-0808.05394-1707.08567_2026-04-12.json")), "a"
    )
    assert [p.id for p in two.papers] == ["1707.08567"]

    one = arxiv_api.parse(fixture("arxiv-api", "id_list-1111.2011v2_2016-10.xml").read_bytes(), "a")
    assert (one.papers[0].id, one.papers[0].version) == ("1111.2011", 2)
    assert one.papers[0].authors[:2] == ("James M. Murray", "Adrian Del Maestro")

    lg_path = fixture("arxiv-api", "query_cat-cs.LG-OR-cs.AI_m20_2026-04-30.xml")
    lg = arxiv_api.parse(lg_path.read_bytes(), "a")
    kayra = next(p for p in lg.papers if p.id == "2604.26869")
    assert "(p < 0.0001 for segmentation" in kayra.abstract


@needs_fixtures
def test_arxiv_api_error_entry_raises() -> None:
    wrapper = json.loads(fixture("arxiv-api", ARXIV_API_ERROR).read_text(encoding="utf-8"))
    assert wrapper["status_code"] == 400
    with pytest.raises(SourceError) as info:
        arxiv_api.parse(wrapper["body"].encode(), "arxiv-bad")
    message = str(info.value)
    assert "incorrect id format for abc" in message
    assert "arxiv-bad" in message


def test_arxiv_api_primary_category_moved_first() -> None:
    data = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <title>arXiv Query</title><id>https://arxiv.org/api/x</id><updated>2026-04-30T00:00:00Z</updated>
  <entry>
    <id>http://arxiv.org/abs/2604.11111v2</id>
    <updated>2026-04-30T00:00:00Z</updated><published>2026-04-29T00:00:00Z</published>
    <title>Primary listed last</title>
    <summary>An abstract.</summary>
    <author><name>A. Author</name></author>
    <author><name>B. Author</name></author>
    <arxiv:primary_category term="stat.ML" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.AI" scheme="http://arxiv.org/schemas/atom"/>
    <category term="stat.ML" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
</feed>"""
    [paper] = arxiv_api.parse(data, "inline").papers
    assert paper.categories == ("stat.ML", "cs.LG", "cs.AI")
    assert paper.authors == ("A. Author", "B. Author")
    assert (paper.id, paper.version) == ("2604.11111", 2)


# --------------------------------------------------------------------------- hf-daily


@needs_fixtures
@pytest.mark.parametrize(("name", "count"), sorted(HF_DAILY_COUNTS.items()))
def test_hf_daily_fixture(name: str, count: int) -> None:
    path = fixture("hf-daily-papers", name)
    raw = json.loads(path.read_bytes())
    result = hf_daily.parse(path.read_bytes(), "hf-daily")
    assert len(raw) == count
    assert len(result.papers) == count
    assert result.skipped == 0
    for paper, item in zip(result.papers, raw, strict=True):
        assert paper.id == item["paper"]["id"]
        assert paper.title
        assert paper.url == f"https://arxiv.org/abs/{paper.id}"
        upvotes = paper.signals.upvotes
        assert isinstance(upvotes, int) and not isinstance(upvotes, bool)
        assert upvotes == item["paper"]["upvotes"]
        assert paper.authors
        assert paper.published is not None and paper.published.tzinfo is not None
        for link in (paper.code_url, paper.project_url):
            assert link is None or link.startswith(("http://", "https://"))


@needs_fixtures
def test_hf_daily_2026_08_21_has_rich_fields() -> None:
    path = fixture("hf-daily-papers", "daily_papers_2026-08-21.json")
    papers = hf_daily.parse(path.read_bytes(), "hf").papers
    assert any(isinstance(p.signals.stars, int) and p.signals.stars >= 0 for p in papers)
    assert any(p.summary for p in papers)
    assert any(p.code_url and p.code_url.startswith("https://github.com/") for p in papers)
    assert any(p.keywords for p in papers)
    assert max(p.signals.upvotes or 0 for p in papers) == 163


@needs_fixtures
def test_hf_daily_2026_07_15_small_day_without_optional_fields() -> None:
    path = fixture("hf-daily-papers", "daily_papers_2026-07-15.json")
    papers = hf_daily.parse(path.read_bytes(), "hf").papers
    assert len(papers) == 2
    assert all(p.summary is None and p.code_url is None for p in papers)
    assert {p.signals.upvotes for p in papers} == {3, 24}


def test_hf_daily_inline_untrusted_values() -> None:
    items = [
        {
            "paper": {
                "id": "2401.00001",
                "title": "<script>alert(1)</script>Real title",
                "summary": "x " * 20_000,
                "authors": [{"name": "<b>Ann</b>"}, {"name": ""}, "Plain Name"],
                "upvotes": 7,
                "githubStars": -5,
                "githubRepo": "javascript:alert(1)",
                "projectPage": "https://user:pw@example.com/",
                "ai_summary": "Short summary.",
            },
            "numComments": True,
        },
        {"paper": {"id": "2401.00002", "title": "Upvotes as a string", "upvotes": "12"}},
        {"paper": {"id": "not-an-id", "title": "No id"}},
        {"paper": {"id": "2401.00003", "title": "   "}},
        "not a dict",
        None,
        {"id": "2401.00004v2", "title": "Top-level only", "githubRepo": "https://github.com/o/r"},
    ]
    result = hf_daily.parse(json.dumps(items).encode(), "hf")
    assert result.skipped == 4
    first, second, third = result.papers
    assert "<" not in first.title and first.title.endswith("Real title")
    assert len(first.abstract) <= MAX_ABSTRACT
    assert first.authors == ("Ann", "Plain Name")
    assert first.code_url is None
    assert first.project_url is None
    assert first.signals.upvotes == 7
    assert first.signals.stars is None  # negative
    assert first.signals.comments is None  # bool is not a count
    assert first.summary == "Short summary."
    assert second.signals.upvotes is None  # a string is not a count
    assert (third.id, third.version) == ("2401.00004", 2)
    assert third.code_url == "https://github.com/o/r"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{not json",
        b"<!DOCTYPE html><html><body>Rate limited</body></html>",
        b"\xff\xfe\x00garbage",
        b'[{"paper": ',
    ],
)
def test_hf_daily_invalid_json_raises(data: bytes) -> None:
    with pytest.raises(SourceError, match="not valid JSON"):
        hf_daily.parse(data, "hf")


@pytest.mark.parametrize("data", [b'{"error": "Invalid date"}', b'"a string"', b"42", b"null"])
def test_hf_daily_non_array_raises(data: bytes) -> None:
    with pytest.raises(SourceError, match="expected a JSON array"):
        hf_daily.parse(data, "hf")


def test_hf_daily_deeply_nested_json_is_a_source_error() -> None:
    with pytest.raises(SourceError):
        hf_daily.parse(b"[" * 100_000, "hf")


# --------------------------------------------------------------------------- other feeds


@needs_fixtures
@pytest.mark.parametrize(("name", "expected"), sorted(OTHER_FEEDS.items()))
def test_other_feed_fixture(name: str, expected: tuple[int, int, bool]) -> None:
    entries, papers_expected, bozo = expected
    result = feed.parse(fixture("other", name).read_bytes(), "feed")
    assert len(result.papers) == papers_expected
    assert len(result.papers) + result.skipped == entries
    if bozo:
        assert result.warnings and "malformed" in result.warnings[0]
    else:
        assert result.warnings == []
    ids = [p.id for p in result.papers]
    assert len(ids) == len(set(ids))
    for paper in result.papers:
        assert paper.title and "<" not in paper.title
        assert paper.url is None or paper.url.startswith(("http://", "https://"))
        assert paper.id.startswith(("doi:", "url:")) or re.fullmatch(r"\d{4}\.\d{4,5}", paper.id)


@needs_fixtures
def test_other_feed_specifics() -> None:
    def parse(name: str) -> list[Paper]:
        return feed.parse(fixture("other", name).read_bytes(), "feed").papers

    [bio] = parse("biorxiv_genomics_rss1.0_2023-12-16.xml")
    assert bio.id.startswith("doi:10.1101/")
    assert bio.id == "doi:10.1101/2023.12.16.571984"
    assert bio.title == bio.title.strip() and bio.title.startswith("Complete genome")

    [golem] = parse("golem_rss1.0_iso-8859-1.xml")
    assert "Glasfaserförderung" in golem.title  # ISO-8859-1 bytes decoded
    assert golem.authors == ("Achim Sawall",)

    psy = parse("cercle-psy_rss2.0_no-xml-decl_iso-8859-1_bozo.xml")
    assert "études" in psy[0].abstract  # windows-1252 bytes decoded despite the bozo
    assert all(p.id.startswith("url:https://le-cercle-psy.scienceshumaines.com/") for p in psy)

    [db] = parse("db-engines-blog_rss2.0_undefined-entity_bozo.xml")
    assert db.title.startswith("Snowflake is the DBMS of the Year 2022")

    mirror = parse("hf-daily-papers_feedgen-mirror_rss_2026-04-30.xml")
    # the arXiv id comes from the arxiv.org link
    assert all(re.fullmatch(r"\d{4}\.\d{4,5}", p.id) for p in mirror)
    assert mirror[0].id == "2604.21003"

    takara = parse("takara_tldr_hf-daily-papers_rss_2026-04-30.xml")
    assert takara[0].url == "https://tldr.takara.ai/p/2604.26238"
    assert all(p.abstract for p in takara)


# --------------------------------------------------------------------------- hostile input

LONG = "word " * 4_000  # 20,000 characters

HOSTILE_RSS = _rss(f"""
<item>
  <title>&lt;script&gt;alert(1)&lt;/script&gt;Innocent title</title>
  <link>javascript:alert(document.cookie)</link>
  <guid isPermaLink="false">oai:arXiv.org:2604.99999v3</guid>
  <description>arXiv:2604.99999v3 Announce Type: new\x20
Abstract: {LONG}</description>
  <dc:creator>Alice Example, Bob &lt;b&gt;Bold&lt;/b&gt;</dc:creator>
</item>
<item>
  <title><![CDATA[<script>alert(2)</script>Second <SCRIPT>x</SCRIPT>title]]></title>
  <link>javascript:alert(2)</link>
  <guid isPermaLink="false">https://doi.org/10.5555/HOSTILE.2</guid>
  <description><![CDATA[<img src=x onerror=alert(3)><script>evil()</script>{LONG}]]></description>
</item>
<item>
  <title>Data link</title>
  <link>data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==</link>
  <guid isPermaLink="false">doi:10.5555/hostile.3</guid>
  <description>{"x" * 20_000}</description>
</item>""")


def test_hostile_input_generic_feed() -> None:
    assert len(LONG) == 20_000
    result = feed.parse(HOSTILE_RSS, "hostile")
    assert len(result.papers) == 3
    for paper in result.papers:
        assert "<script" not in paper.title.lower()
        assert "<" not in paper.title
        # javascript: / data: links dropped; the arXiv page or DOI resolver stands in
        expected = (
            f"https://doi.org/{paper.id.removeprefix('doi:')}"
            if paper.id.startswith("doi:")
            else f"https://arxiv.org/abs/{paper.id}"
        )
        assert paper.url == expected
        assert len(paper.abstract) <= MAX_ABSTRACT
        assert "<" not in paper.abstract
    assert [p.id for p in result.papers] == [
        "2604.99999",
        "doi:10.5555/hostile.2",
        "doi:10.5555/hostile.3",
    ]
    assert result.papers[0].title.endswith("Innocent title")
    assert len(result.papers[2].abstract) == MAX_ABSTRACT  # bounded, not dropped


@pytest.mark.parametrize(
    "parser", [arxiv_rss.parse, arxiv_api.parse], ids=["arxiv_rss", "arxiv_api"]
)
def test_hostile_input_arxiv_parsers(parser: Parser) -> None:
    result = parser(HOSTILE_RSS, "hostile")
    assert result.papers, "the item with an arXiv guid is kept"
    for paper in result.papers:
        assert "<script" not in paper.title.lower()
        assert "<" not in paper.title
        assert len(paper.abstract) <= MAX_ABSTRACT
        assert all("<" not in a for a in paper.authors)
        # the feed's javascript: link is never used: arXiv links are built from the id
        assert paper.url == f"https://arxiv.org/abs/{paper.id}"


def test_hostile_arxiv_rss_strips_prefix_from_long_abstract() -> None:
    [paper] = arxiv_rss.parse(HOSTILE_RSS, "hostile").papers
    assert paper.abstract.startswith("word word")
    assert paper.abstract.endswith("…")
    assert paper.authors == ("Alice Example", "Bob Bold")


HTML_PAGES = [
    b"<!DOCTYPE html><html><head><title>Login</title></head><body>Please sign in</body></html>",
    b"\n\n   <!doctype HTML>\n<html lang=en><title>503</title><p>Service unavailable",
    b"<html><head><title>Error</title></head><body>Not found</body></html>",
    b"<HTML><BODY>Moved</BODY></HTML>",
]
PARSERS: list[Parser] = [feed.parse, arxiv_rss.parse, arxiv_api.parse]
PARSER_IDS = ["feed", "arxiv_rss", "arxiv_api"]


@pytest.mark.parametrize("page", HTML_PAGES)
@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_html_page_is_not_a_feed(parser: Parser, page: bytes) -> None:
    with pytest.raises(SourceError, match="HTML page"):
        parser(page, "html-source")


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_html_page_with_bom_is_not_a_feed(parser: Parser) -> None:
    page = b"\xef\xbb\xbf<!DOCTYPE html><html><head><title>Hi</title></head><body>x</body></html>"
    with pytest.raises(SourceError):
        parser(page, "html-source")


def test_html_page_with_leading_comment_is_not_a_feed() -> None:
    page = (
        b"<!-- saved page --><!DOCTYPE html>"
        b"<html><head><title>Hi</title></head><body>x</body></html>"
    )
    with pytest.raises(SourceError):
        feed.parse(page, "html-source")


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_unreadable_bytes_are_a_source_error(parser: Parser) -> None:
    with pytest.raises(SourceError, match="not a readable feed"):
        parser(b"\x00\x01 this is not xml at all <<<", "junk")


# --------------------------------------------------------------------------- collect / fetch

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def collect_all(specs: list[SourceSpec], fetcher: Any) -> list[SourceOutcome]:
    """Each source in turn, as the collect stage does: one failing never stops the next."""
    return [collect_one(spec, fetcher, NOW) for spec in specs]


def test_collect_one_missing_path_is_an_outcome_error(tmp_path: Path) -> None:
    fetcher = HttpFetcher(timeout=5)
    try:
        missing = tmp_path / "does-not-exist.xml"
        outcome = collect_one(SourceSpec("gone", "feed", str(missing)), fetcher, NOW)
    finally:
        fetcher.close()
    assert outcome.error is not None
    assert "cannot read" in outcome.error and "does-not-exist.xml" in outcome.error
    assert outcome.papers == []
    assert outcome.name == "gone" and outcome.kind == "feed"


def test_collect_all_continues_after_a_failing_source(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(
        _rss("""
<item><title>Good paper</title><link>https://example.org/p/1</link><description>ok</description></item>
""")
    )
    html = tmp_path / "page.html"
    html.write_bytes(HTML_PAGES[0])
    specs = [
        SourceSpec("missing", "feed", str(tmp_path / "nope.xml")),
        SourceSpec("html", "feed", str(html)),
        SourceSpec("dir", "feed", str(tmp_path)),
        SourceSpec("ftp", "feed", "ftp://example.org/feed.xml"),
        SourceSpec("good", "feed", str(good)),
        SourceSpec("good-file-url", "feed", good.as_uri()),
    ]
    fetcher = HttpFetcher(timeout=5)
    try:
        outcomes = collect_all(specs, fetcher)
    finally:
        fetcher.close()
    assert [o.name for o in outcomes] == [s.name for s in specs]
    assert [o.error is not None for o in outcomes] == [True, True, True, True, False, False]
    assert "HTML page" in (outcomes[1].error or "")
    assert "unsupported URL scheme" in (outcomes[3].error or "")
    for outcome in outcomes[4:]:
        assert [p.title for p in outcome.papers] == ["Good paper"]
        assert outcome.papers[0].id == "url:https://example.org/p/1"
        assert outcome.seconds >= 0


@needs_fixtures
def test_collect_all_reads_fixtures_by_path_and_file_url() -> None:
    specs = [
        SourceSpec("missing", "arxiv-rss", str(fixture("arxiv-rss", "no-such-file.xml"))),
        SourceSpec(
            "cs.LG", "arxiv-rss", str(fixture("arxiv-rss", "cs.LG_2026-04-27_trimmed3.xml"))
        ),
        SourceSpec(
            "hf", "hf-daily", fixture("hf-daily-papers", "daily_papers_2026-08-21.json").as_uri()
        ),
        SourceSpec(
            "bozo",
            "feed",
            str(fixture("other", "db-engines-blog_rss2.0_undefined-entity_bozo.xml")),
        ),
    ]
    fetcher = HttpFetcher(timeout=5)
    try:
        outcomes = collect_all(specs, fetcher)
    finally:
        fetcher.close()
    assert outcomes[0].error is not None
    assert (outcomes[1].error, len(outcomes[1].papers)) == (None, 3)
    assert (outcomes[2].error, len(outcomes[2].papers)) == (None, 17)
    assert outcomes[3].error is None and len(outcomes[3].papers) == 1
    assert outcomes[3].warnings  # bozo warning carried into the outcome


def test_collect_all_survives_deeply_nested_json() -> None:
    class Fetcher:
        def fetch(self, location: str, validators: Validators | None = None) -> FetchResult:
            if location == "deep":
                return FetchResult(b"[" * 100_000)
            return FetchResult(b'[{"paper": {"id": "2401.00001", "title": "T", "upvotes": 3}}]')

    outcomes = collect_all(
        [SourceSpec("deep", "hf-daily", "deep"), SourceSpec("ok", "hf-daily", "ok")], Fetcher()
    )
    assert outcomes[0].error is not None
    assert len(outcomes[1].papers) == 1


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 (port chosen by the OS) serving tmp_path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_fetch_ok_404_and_size_limit(
    http_root: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    base, root = http_root
    body = b'[{"paper": {"id": "2401.00001v2", "title": "Over HTTP", "upvotes": 5}}]'
    (root / "daily.json").write_bytes(body)

    fetcher = HttpFetcher(timeout=5)
    small = HttpFetcher(timeout=5, max_bytes=10)
    try:
        assert fetcher.fetch(f"{base}/daily.json").body == body
        outcomes = collect_all(
            [
                SourceSpec("missing", "hf-daily", f"{base}/missing.json"),
                SourceSpec("daily", "hf-daily", f"{base}/daily.json"),
            ],
            fetcher,
        )
        with pytest.raises(SourceError, match="larger than 10 bytes"):
            small.fetch(f"{base}/daily.json")
    finally:
        fetcher.close()
        small.close()
    assert outcomes[0].error is not None and "HTTP 404" in outcomes[0].error
    assert outcomes[1].error is None
    got = [(p.id, p.version, p.title) for p in outcomes[1].papers]
    assert got == [("2401.00001", 2, "Over HTTP")]


def test_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"x" * 100)
    fetcher = HttpFetcher(timeout=5, max_bytes=50)
    try:
        with pytest.raises(SourceError, match="larger than 50 bytes"):
            fetcher.fetch(str(big))
    finally:
        fetcher.close()


# --------------------------------------------------------------------------- merge


def _paper(**kw: object) -> Paper:
    base: dict[str, object] = {"id": "2604.21935", "title": "Title", "source": "s"}
    base.update(kw)
    return Paper(**base)  # type: ignore[arg-type]


def test_merge_first_sighting_is_the_paper() -> None:
    row = merge_paper(None, _paper(abstract="abs", categories=("cs.LG",), version=1))
    assert row["title"] == "Title" and row["abstract"] == "abs"
    assert row["categories"] == ["cs.LG"] and row["version"] == 1


def test_merge_richer_abstract_wins_either_way() -> None:
    short, rich = "Short.", "A much richer abstract with more detail."
    row = merge_paper(None, _paper(abstract=short, version=1))
    row = merge_paper(row, _paper(abstract=rich, version=1, source="hf"))
    assert row["abstract"] == rich
    row = merge_paper(row, _paper(abstract=short, version=1, source="other"))
    assert row["abstract"] == rich  # a poorer one does not replace it
    row = merge_paper(row, _paper(abstract="", version=None, source="feed"))
    assert row["abstract"] == rich


def test_merge_newer_version_replaces_title_and_abstract_even_when_shorter() -> None:
    old = {"title": "Old long title", "version": 1}
    row = merge_paper(None, _paper(abstract="Old and much longer abstract.", **old))
    row = merge_paper(row, _paper(title="New title", abstract="New.", version=2))
    assert (row["title"], row["abstract"], row["version"]) == ("New title", "New.", 2)
    # an older version seen later does not bring its title or version back
    row = merge_paper(row, _paper(abstract="Old and much longer abstract.", **old))
    assert (row["title"], row["version"]) == ("New title", 2)


def test_merge_older_version_does_not_bring_back_its_abstract() -> None:
    v1 = _paper(title="Old", abstract="Old and much longer abstract.", version=1)
    row = merge_paper(None, v1)
    row = merge_paper(row, _paper(title="New", abstract="New.", version=2))
    row = merge_paper(row, v1)
    assert (row["title"], row["abstract"], row["version"]) == ("New", "New.", 2)


def test_merge_same_version_keeps_first_title() -> None:
    row = merge_paper(None, _paper(title="First", version=1))
    row = merge_paper(row, _paper(title="Second", version=1))
    assert row["title"] == "First"


def test_merge_unknown_version_is_filled_in() -> None:
    row = merge_paper(None, _paper(version=None))
    row = merge_paper(row, _paper(version=3))
    assert row["version"] == 3


def test_merge_unions_categories_and_keywords_in_order() -> None:
    row = merge_paper(None, _paper(categories=("cs.LG", "cs.AI"), keywords=("rl",)))
    row = merge_paper(row, _paper(categories=("cs.AI", "stat.ML"), keywords=("rl", "agents")))
    assert row["categories"] == ["cs.LG", "cs.AI", "stat.ML"]
    assert row["keywords"] == ["rl", "agents"]


def test_merge_keeps_links_and_more_authors() -> None:
    row = merge_paper(None, _paper(url="https://arxiv.org/abs/2604.21935", authors=("A",)))
    row = merge_paper(
        row,
        _paper(
            url="https://other.example/x", code_url="https://github.com/o/r", authors=("A", "B")
        ),
    )
    assert row["url"] == "https://arxiv.org/abs/2604.21935"
    assert row["code_url"] == "https://github.com/o/r"
    assert row["authors"] == ["A", "B"]


ARXIV_ATOM = b"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
      xmlns:dc="http://purl.org/dc/elements/1.1/">
  <id>http://rss.arxiv.org/atom/cs.CL</id><title>cs.CL updates on arXiv.org</title>
  <updated>2026-11-24T05:00:00Z</updated>
  <entry>
    <id>oai:arXiv.org:2611.20001v1</id><title>Listed authors</title>
    <updated>2026-11-24T05:00:00Z</updated>
    <link href="https://arxiv.org/abs/2611.20001" rel="alternate" type="text/html"/>
    <summary>arXiv:2611.20001v1 Announce Type: cross
Abstract: One by one.</summary>
    <category term="cs.CL"/><category term="cs.LG"/>
    <arxiv:announce_type>cross</arxiv:announce_type>
    <author><name>Ren\\'e Girard</name></author><author><name>Ada Byron</name></author>
  </entry>
  <entry>
    <id>oai:arXiv.org:2611.20002v2</id><title>Joined authors</title>
    <updated>2026-11-24T05:00:00Z</updated>
    <link href="https://arxiv.org/abs/2611.20002" rel="alternate" type="text/html"/>
    <summary>arXiv:2611.20002v2 Announce Type: replace
Abstract: Revised.</summary>
    <arxiv:announce_type>replace</arxiv:announce_type>
    <dc:creator>A One, B Two and C Three</dc:creator>
  </entry>
</feed>"""


def test_arxiv_atom_flavour() -> None:
    first, second = arxiv_rss.parse(ARXIV_ATOM, "atom").papers
    assert (first.id, first.version, first.announce_type) == ("2611.20001", 1, "cross")
    assert first.authors == ("René Girard", "Ada Byron")
    assert first.abstract == "One by one." and first.categories == ("cs.CL", "cs.LG")
    assert (second.id, second.version, second.announce_type) == ("2611.20002", 2, "replace")
    assert second.authors == ("A One", "B Two", "C Three")


@needs_fixtures
def test_arxiv_api_details_are_kept() -> None:
    [paper] = arxiv_api.parse(
        fixture("arxiv-api", "id_list-1111.2011v2_2016-10.xml").read_bytes(), "api"
    ).papers
    assert paper.comment and paper.journal_ref and paper.doi and paper.doi.startswith("10.")
