"""Get a source's bytes: one HTTP layer, injected so tests replay files or a local server.

``HttpFetcher`` bounds every request in time and size (decompression included, so a gzip
bomb stops at the cap), sends conditional-GET validators, retries 429 and 5xx with backoff
that honours ``Retry-After`` and ``RateLimit`` headers, spaces requests per host (3 s for
arXiv, its terms) and reads only http, https and file URLs. Sleeping and the monotonic clock
are injected so tests never wait.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from newsletter import __version__
from newsletter.errors import SourceError

MAX_BYTES = 50 * 1024 * 1024
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
ARXIV_SPACING = 3.0
DEFAULT_SPACING: Mapping[str, float] = {
    "arxiv.org": ARXIV_SPACING,
    "export.arxiv.org": ARXIV_SPACING,
    "rss.arxiv.org": ARXIV_SPACING,
}


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last response said about itself, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A body, or ``not_modified`` after a 304; ``moved_to`` names a permanent redirect."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.body is None


class Fetcher(Protocol):
    """Returns what is at ``location`` (an http(s) URL, a ``file://`` URL or a path)."""

    def fetch(self, location: str, validators: Validators | None = None) -> FetchResult: ...


def retry_delay(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait (Retry-After, RateLimit reset), if it said."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("ratelimit", "ratelimit-reset", "x-ratelimit-reset"):
        value = headers.get(name)
        if not value:
            continue
        m = re.search(r"(?:^|[;,\s])(?:t|reset)=(\d+)", value) or re.fullmatch(
            r"\s*(\d+)\s*", value
        )
        if m:
            seconds = float(m.group(1))
            # x-ratelimit-reset is sometimes an epoch time rather than a delay
            return max(0.0, seconds - now) if seconds > 1e9 else seconds
    return None


class _Bounded:
    """Decodes gzip/deflate incrementally, refusing to produce more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int, what: str) -> None:
        self._limit, self._what, self._size = limit, what, 0
        enc = encoding.lower().strip()
        if enc in ("", "identity"):
            self._z = None
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise SourceError(f"{what}: unsupported Content-Encoding {encoding!r}")

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._z is None:
            yield self._count(chunk)
            return
        data = chunk
        while data:
            out = self._z.decompress(data, self._limit - self._size + 1)
            yield self._count(out)
            data = self._z.unconsumed_tail

    def _count(self, out: bytes) -> bytes:
        self._size += len(out)
        if self._size > self._limit:
            raise SourceError(f"{self._what}: larger than {self._limit} bytes (decoded); refused")
        return out


class HttpFetcher:
    """httpx for http(s), the filesystem for ``file://`` and paths."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_bytes: int = MAX_BYTES,
        contact: str = "",
        retries: int = 3,
        max_wait: float = 120.0,
        spacing: Mapping[str, float] = DEFAULT_SPACING,
        default_spacing: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        agent = f"newsletter/{__version__} (research digest)"
        if contact:
            agent = f"newsletter/{__version__} (research digest; contact: {contact})"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": agent, "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._max = max_bytes
        self._retries, self._max_wait = retries, max_wait
        self._spacing, self._default_spacing = dict(spacing), default_spacing
        self._sleep, self._monotonic, self._wall = sleep, monotonic, wall
        self._last: dict[str, float] = {}
        self.waits: list[float] = []  # every pause taken, for reports and tests

    def close(self) -> None:
        self._client.close()

    def fetch(self, location: str, validators: Validators | None = None) -> FetchResult:
        scheme = urlsplit(location).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_http(location, validators or Validators())
        if scheme == "file":
            return FetchResult(self._read(Path(unquote(urlsplit(location).path))))
        if scheme and len(scheme) > 1:
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in {location}",
                hint="use http, https, file:// or a local path",
            )
        return FetchResult(self._read(Path(location)))

    def _read(self, path: Path) -> bytes:
        try:
            if path.stat().st_size > self._max:
                raise SourceError(f"{path} is larger than {self._max} bytes; refused")
            return path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.waits.append(seconds)
            self._sleep(seconds)

    def _space(self, host: str) -> None:
        gap = self._spacing.get(host, self._default_spacing)
        last = self._last.get(host)
        if last is not None:
            self._pause(last + gap - self._monotonic())

    def _fetch_http(self, url: str, validators: Validators) -> FetchResult:
        host = (urlsplit(url).hostname or "").lower()
        headers = {}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        for attempt in range(1, self._retries + 2):
            self._space(host)
            try:
                result = self._once(url, headers, attempt)
            except _Retry as retry:
                if attempt > self._retries:
                    raise SourceError(f"{url}: {retry.reason} after {attempt} attempts") from None
                delay = retry.delay
                if delay is None:
                    delay = min(self._max_wait, 2.0**attempt) * (0.5 + random.random() / 2)
                if delay > self._max_wait:
                    raise SourceError(
                        f"{url}: {retry.reason}; the server asks to wait {delay:.0f} s, "
                        f"more than {self._max_wait:.0f} s",
                        hint="the next collect will try again",
                    ) from None
                self._pause(delay)
                continue
            finally:
                self._last[host] = self._monotonic()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, url: str, headers: dict[str, str], attempt: int) -> FetchResult:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 304:
                    return FetchResult(
                        None,
                        validators_of(response).etag,
                        validators_of(response).last_modified,
                        attempts=attempt,
                    )
                if status in RETRY_STATUS:
                    raise _Retry(f"HTTP {status}", retry_delay(response.headers, self._wall()))
                if status == 410:
                    raise FetchError(
                        f"{url}: HTTP 410 Gone",
                        410,
                        hint="the feed was removed; delete this source from the config",
                    )
                if status >= 400:
                    head = b"".join(_take(response.iter_bytes(), 65536))
                    raise FetchError(f"{url}: HTTP {status}", status, head)
                decoder = _Bounded(response.headers.get("content-encoding", ""), self._max, url)
                body = b"".join(out for raw in response.iter_raw() for out in decoder.feed(raw))
                moved = next(
                    (
                        str(r.headers.get("location", ""))
                        for r in response.history
                        if r.status_code in (301, 308)
                    ),
                    None,
                )
                v = validators_of(response)
                return FetchResult(
                    body,
                    v.etag,
                    v.last_modified,
                    moved_to=str(response.url) if moved else None,
                    attempts=attempt,
                )
        except httpx.TooManyRedirects:
            raise SourceError(f"{url}: too many redirects (a redirect loop?)") from None
        except httpx.TimeoutException:
            raise SourceError(f"{url}: timed out", hint="the next collect will try again") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise _Retry(f"connection failed ({exc.__class__.__name__})", None) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"{url}: {exc.__class__.__name__}: {exc}") from None


def _take(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        yield chunk[: limit - size]
        size += len(chunk)
        if size >= limit:
            return


def validators_of(response: httpx.Response) -> Validators:
    return Validators(response.headers.get("etag"), response.headers.get("last-modified"))


class FetchError(SourceError):
    """The server answered with an error status; ``body`` holds the start of its answer."""

    def __init__(self, message: str, status: int, body: bytes = b"", hint: str | None = None):
        super().__init__(message, hint)
        self.status, self.body = status, body


class _Retry(Exception):
    def __init__(self, reason: str, delay: float | None) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay
