"""Get a source's bytes: an injected ``Fetcher`` so tests replay files or a local server."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from newsletter import __version__
from newsletter.errors import SourceError

MAX_BYTES = 50 * 1024 * 1024


class Fetcher(Protocol):
    """Returns the body at ``location`` (an http(s) URL, a ``file://`` URL or a path)."""

    def fetch(self, location: str) -> bytes: ...


class HttpFetcher:
    """httpx for http(s), the filesystem for ``file://`` and paths; bounded in size and time."""

    def __init__(
        self, timeout: float = 30.0, max_bytes: int = MAX_BYTES, contact: str = ""
    ) -> None:
        agent = f"newsletter/{__version__} (+https://github.com/newsletter)"
        if contact:
            agent += f" {contact}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": agent},
        )
        self._max = max_bytes

    def close(self) -> None:
        self._client.close()

    def fetch(self, location: str) -> bytes:
        scheme = urlsplit(location).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_http(location)
        if scheme == "file":
            return self._read(Path(unquote(urlsplit(location).path)))
        if scheme and len(scheme) > 1:
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in {location}",
                hint="use http, https, file:// or a local path",
            )
        return self._read(Path(location))

    def _read(self, path: Path) -> bytes:
        try:
            if path.stat().st_size > self._max:
                raise SourceError(f"{path} is larger than {self._max} bytes")
            return path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None

    def _fetch_http(self, url: str) -> bytes:
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise SourceError(f"{url} answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self._max:
                        raise SourceError(f"{url} sent more than {self._max} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TooManyRedirects:
            raise SourceError(f"{url}: too many redirects") from None
        except httpx.TimeoutException:
            raise SourceError(f"{url}: timed out") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"{url}: {exc}") from None
