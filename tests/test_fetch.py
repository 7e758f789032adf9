"""The HTTP layer and the collect stage against a real HTTP server on 127.0.0.1.

The server injects the faults a feed host can have; the fetcher's sleep is recorded, not
taken, so retries and spacing are checked without waiting.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import astuple
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from newsletter.collect import collect
from newsletter.errors import SourceError
from newsletter.sources import SourceSpec, collect_one
from newsletter.sources.fetch import HttpFetcher, Validators, retry_delay
from newsletter.store import Store

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    b"<item><title>One</title><link>https://example.org/p/1</link><description>a</description>"
    b"</item><item><title>Two</title><link>https://example.org/p/2</link></item>"
    b"</channel></rss>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<rss version="2.0"><channel><title>&lol3;</title></channel></rss>'
)
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


class Handler(BaseHTTPRequestHandler):
    server: FaultServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        path = self.path.split("?")[0]
        srv.seen.append((path, dict(self.headers)))
        if path.startswith("/api/"):
            srv.queries.append(parse_qs(urlsplit(self.path).query))
        hits = sum(1 for p, _ in srv.seen if p == path)
        if path == "/feed.xml":
            if self.headers.get("If-None-Match") == '"v1"':
                return self._send(304, ETag='"v1"')
            return self._send(
                200,
                RSS,
                ETag='"v1"',
                Last_Modified="Tue, 24 Nov 2026 10:00:00 GMT",
                Content_Type="application/rss+xml",
            )
        if path == "/busy":
            if hits == 1:
                return self._send(429, b"slow down", Retry_After="7")
            return self._send(200, RSS)
        if path == "/ratelimited":
            if hits == 1:
                return self._send(503, b"", RateLimit='"api";r=0;t=12')
            return self._send(200, RSS)
        if path == "/always-busy":
            return self._send(429, b"", Retry_After="3")
        if path == "/too-patient":
            return self._send(429, b"", Retry_After="86400")
        if path == "/slow":
            srv.release.wait(30)  # held until the test is over: the client must time out
            return self._send(200, RSS)
        if path == "/loop":
            return self._send(302, Location="/loop")
        if path == "/moved":
            return self._send(301, Location="/feed.xml")
        if path == "/html":
            return self._send(200, HTML, Content_Type="text/html")
        if path == "/truncated":
            return self._send(200, RSS[: len(RSS) // 2])
        if path == "/big":
            return self._send(200, b"<rss>" + b" " * 2_000_000 + b"</rss>")
        if path == "/bomb":
            return self._send(200, gzip.compress(b"\0" * 50_000_000), Content_Encoding="gzip")
        if path == "/gzip":
            return self._send(200, gzip.compress(RSS), Content_Encoding="gzip")
        if path == "/laughs":
            return self._send(200, LAUGHS)
        if path == "/gone":
            return self._send(410, b"gone")
        if path == "/api/query":
            return self._arxiv_page()
        if path == "/api/bad-query":
            return self._send(400, ARXIV_ERROR, Content_Type="application/atom+xml")
        if path == "/api/daily_papers":
            day = parse_qs(urlsplit(self.path).query)["date"][0]
            body = [
                {"paper": {"id": "2611.00001", "title": "Every day", "upvotes": 3}},
                {"paper": {"id": f"2611.{day[-2:]}999", "title": f"Only {day}"}},
            ]
            return self._send(200, json.dumps(body).encode())
        return self._send(404, b"not found")

    def _arxiv_page(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        start, size = int(query["start"][0]), int(query["max_results"][0])
        total = 7
        entries = "".join(
            f"<entry><id>http://arxiv.org/abs/2611.{i:05d}v1</id><title>Paper {i}</title>"
            f"<summary>About {i}</summary><author><name>A {i}</name></author>"
            f'<arxiv:primary_category term="cs.LG"/><category term="cs.LG"/></entry>'
            for i in range(start, min(start + size, total))
        )
        body = (
            f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
            f'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
            f'xmlns:arxiv="http://arxiv.org/schemas/atom"><title>q</title>'
            f"<opensearch:totalResults>{total}</opensearch:totalResults>{entries}</feed>"
        )
        self._send(200, body.encode(), Content_Type="application/atom+xml")


ARXIV_ERROR = (
    b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>q</title>'
    b"<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_abc</id>"
    b"<title>Error</title><summary>incorrect id format for abc</summary></entry>"
    b"</feed>"
)


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.queries: list[dict[str, list[str]]] = []
        self.release = threading.Event()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    srv = FaultServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def fetcher(waits: list[float]) -> Iterator[HttpFetcher]:
    f = HttpFetcher(
        timeout=1.0,
        max_bytes=1_000_000,
        retries=2,
        max_wait=60,
        sleep=waits.append,
        default_spacing=0,
        contact="ops@lab.example",
    )
    yield f
    f.close()


def url(server: FaultServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_conditional_get_sends_validators_and_handles_304(
    server: FaultServer, fetcher: HttpFetcher
) -> None:
    first = fetcher.fetch(url(server, "/feed.xml"))
    assert first.body == RSS and first.etag == '"v1"'
    assert first.last_modified == "Tue, 24 Nov 2026 10:00:00 GMT"
    second = fetcher.fetch(url(server, "/feed.xml"), Validators(first.etag, first.last_modified))
    assert second.not_modified and second.etag == '"v1"'
    sent = server.seen[-1][1]
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Tue, 24 Nov 2026 10:00:00 GMT"
    assert "newsletter/" in sent["User-Agent"] and "ops@lab.example" in sent["User-Agent"]


def test_429_retry_after_is_honoured(
    server: FaultServer, fetcher: HttpFetcher, waits: list[float]
) -> None:
    result = fetcher.fetch(url(server, "/busy"))
    assert result.body == RSS and result.attempts == 2
    assert waits == [7.0]


def test_ratelimit_header_is_honoured(
    server: FaultServer, fetcher: HttpFetcher, waits: list[float]
) -> None:
    assert fetcher.fetch(url(server, "/ratelimited")).body == RSS
    assert waits == [12.0]


def test_retries_are_capped(server: FaultServer, fetcher: HttpFetcher, waits: list[float]) -> None:
    with pytest.raises(SourceError, match="HTTP 429 after 3 attempts"):
        fetcher.fetch(url(server, "/always-busy"))
    assert waits == [3.0, 3.0]
    with pytest.raises(SourceError, match="asks to wait 86400 s"):
        fetcher.fetch(url(server, "/too-patient"))


def test_per_host_spacing(server: FaultServer, waits: list[float]) -> None:
    clock = iter([100.0, 100.5, 101.0, 101.0, 104.0, 104.0])
    f = HttpFetcher(
        timeout=1.0, sleep=waits.append, monotonic=lambda: next(clock), spacing={"127.0.0.1": 3.0}
    )
    try:
        f.fetch(url(server, "/feed.xml"))
        f.fetch(url(server, "/feed.xml"))
    finally:
        f.close()
    assert waits == [2.5]  # 3 s after the first request ended at t=100.0


def test_gzip_is_decoded_within_the_cap(server: FaultServer, fetcher: HttpFetcher) -> None:
    assert fetcher.fetch(url(server, "/gzip")).body == RSS
    with pytest.raises(SourceError, match="larger than 1000000 bytes"):
        fetcher.fetch(url(server, "/bomb"))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/slow", "timed out"),
        ("/loop", "too many redirects"),
        ("/html", "got an HTML page"),
        ("/truncated", "cut off"),
        ("/big", "larger than 1000000 bytes"),
        ("/bomb", "larger than 1000000 bytes"),
        ("/laughs", "declares XML entities"),
        ("/gone", "HTTP 410 Gone"),
        ("/nothing-here", "HTTP 404"),
    ],
)
def test_each_fault_is_one_clear_error_and_the_store_is_unchanged(
    server: FaultServer, fetcher: HttpFetcher, tmp_path: Path, path: str, message: str
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    good = SourceSpec("good", "feed", url(server, "/feed.xml"))
    collect(store, [good], fetcher, NOW)
    before = (store.counts(), store.source_state("good"))
    rows = collect(store, [SourceSpec("bad", "feed", url(server, path)), good], fetcher, NOW)
    bad, again = rows
    assert bad.outcome.error is not None and message in bad.outcome.error
    assert "\n" not in bad.outcome.error
    assert again.status == "not modified"  # the next source still ran
    assert (store.counts(), store.source_state("good")) == before
    assert store.source_states()[0]["last_error"] == bad.outcome.error
    store.close()


def test_collect_twice_adds_nothing_and_moved_feed_warns(
    server: FaultServer, fetcher: HttpFetcher, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = SourceSpec("moved", "feed", url(server, "/moved"))
    [first] = collect(store, [spec], fetcher, NOW)
    assert astuple(first.counts) == (2, 0, 0)
    assert any("moved permanently" in w for w in first.outcome.warnings)
    [second] = collect(store, [spec], fetcher, NOW)
    assert second.status == "not modified" and astuple(second.counts) == (0, 0, 0)
    assert store.counts()["papers"] == 2
    store.close()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"retry-after": "Tue, 24 Nov 2026 12:01:00 GMT"}, 60.0),
        ({"ratelimit": '"api";r=0;t=55'}, 55.0),
        ({"ratelimit": "limit=100, remaining=0, reset=9"}, 9.0),
        ({"ratelimit-reset": "4"}, 4.0),
        ({"x-ratelimit-reset": str(int(NOW.timestamp()) + 20)}, 20.0),
        ({}, None),
    ],
)
def test_retry_delay(headers: dict[str, str], expected: float | None) -> None:
    assert retry_delay(headers, NOW.timestamp()) == expected


def test_arxiv_api_pages_politely_within_the_window(server: FaultServer, tmp_path: Path) -> None:
    waits: list[float] = []
    clock = iter(float(t) for t in range(0, 100, 1))
    f = HttpFetcher(
        timeout=2.0, sleep=waits.append, monotonic=lambda: next(clock), spacing={"127.0.0.1": 3.0}
    )
    spec = SourceSpec(
        "api",
        "arxiv-api",
        url(server, "/api/query"),
        categories=("cs.LG",),
        query='abs:"graph"',
        days=2,
        page_size=3,
        max_results=100,
    )
    try:
        outcome = collect_one(spec, f, NOW)
    finally:
        f.close()
    assert outcome.error is None
    assert [p.id for p in outcome.papers] == [f"2611.{i:05d}" for i in range(7)]
    assert [(q["start"], q["max_results"]) for q in server.queries] == [
        (["0"], ["3"]),
        (["3"], ["3"]),
        (["6"], ["3"]),
    ]
    assert outcome.requests == 3
    assert waits == [2.0, 2.0]  # 3 s apart: each request "took" 1 s on the fake clock
    first_query = server.queries[0]
    assert first_query["search_query"][0] == (
        '(abs:"graph") AND (cat:cs.LG) AND submittedDate:[202611221200 TO 202611241200]'
    )
    assert first_query["sortBy"] == ["submittedDate"]


def test_arxiv_api_error_is_arxivs_own_words(server: FaultServer, fetcher: HttpFetcher) -> None:
    outcome = collect_one(
        SourceSpec("api", "arxiv-api", url(server, "/api/bad-query")), fetcher, NOW
    )
    assert outcome.error is not None and "incorrect id format for abc" in outcome.error


def test_hf_daily_fetches_each_day_once_per_paper(
    server: FaultServer, fetcher: HttpFetcher
) -> None:
    spec = SourceSpec("hf", "hf-daily", url(server, "/api/daily_papers"), days=2)
    outcome = collect_one(spec, fetcher, NOW)
    assert outcome.error is None and outcome.requests == 2
    assert [q["date"] for q in server.queries] == [["2026-11-24"], ["2026-11-23"]]
    assert sorted(p.title for p in outcome.papers) == [
        "Every day",
        "Only 2026-11-23",
        "Only 2026-11-24",
    ]


def test_data_the_store_cannot_hold_fails_that_source_only(
    tmp_path: Path, fetcher: HttpFetcher
) -> None:
    huge = tmp_path / "huge.xml"  # a version number no INTEGER column holds
    huge.write_bytes(
        b'<?xml version="1.0"?><rss xmlns:arxiv="http://arxiv.org/schemas/atom" version="2.0">'
        b"<channel><title>t</title><item><title>Odd</title>"
        b"<link>https://arxiv.org/abs/2611.00001</link>"
        b'<guid isPermaLink="false">oai:arXiv.org:2611.00001v99999999999999999999999</guid>'
        b"<description>arXiv:2611.00001v9 Announce Type: new Abstract: x</description>"
        b"</item></channel></rss>"
    )
    daily = tmp_path / "daily.json"
    daily.write_text(
        '[{"paper": {"id": "2611.00002", "title": "Big", "upvotes": 100000000000000000000}}]'
    )
    good = tmp_path / "good.xml"
    good.write_bytes(RSS)
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rows = collect(
        store,
        [
            SourceSpec("huge", "arxiv-rss", str(huge)),
            SourceSpec("hf", "hf-daily", str(daily)),
            SourceSpec("good", "feed", str(good)),
        ],
        fetcher,
        NOW,
    )
    assert rows[0].outcome.error is not None and "could not be stored" in rows[0].outcome.error
    assert rows[1].outcome.error is None  # an absurd count is dropped, the paper kept
    [kept] = rows[1].outcome.papers
    assert kept.signals.upvotes is None
    assert rows[2].outcome.error is None and rows[2].counts.new == 2
    assert store.counts()["papers"] == 3
    store.close()
