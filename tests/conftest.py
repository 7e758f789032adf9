"""Shared fixtures: a real SMTP server on 127.0.0.1, real SQLite files, configs in tmp_path."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.cli import run
from newsletter.collect import collect, source_specs
from newsletter.config import Config, load_config
from newsletter.deliver import SMTPSender
from newsletter.engine import DeliverySettings
from newsletter.models import RunReport, Signals, StoredPaper, Subscriber
from newsletter.resources import bundled, sample_dir
from newsletter.sending import SendContext, send_edition
from newsletter.smtp_server import LocalSMTPServer
from newsletter.sources.fetch import HttpFetcher
from newsletter.store import Store
from newsletter.subscriptions import Signer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SECRET = "test-secret-0123456789abcdef"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# PostgreSQL for the tests that run on both backends: a server URL whose user may create
# databases (`.ci/run` starts a throwaway cluster and sets it); without it they skip.
POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES", "")


class Databases:
    """Fresh databases for one test on one backend: each ``new()`` is a database of its own
    (a test may set up two installations); all are dropped when the test ends."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind, self.tmp_path = kind, tmp_path
        self.made: list[str] = []
        self.made_urls: list[str] = []

    def new(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp_path / 'db' / f'test{len(self.made)}.db'}"
        from sqlalchemy import create_engine, make_url, text

        name = f"nl_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.made.append(name)
        url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
        self.made_urls.append(url)
        return url

    def drop(self) -> None:
        if not self.made or self.kind == "sqlite":
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


DATABASES: ContextVar[Databases | None] = ContextVar("DATABASES", default=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def each_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Run the test once on SQLite and once on PostgreSQL (fresh databases); ``write_config``
    and ``setup_edition`` then use that backend."""
    if request.param == "postgresql" and not POSTGRES:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_POSTGRES to a server URL (.ci/run does)")
    dbs = Databases(request.param, tmp_path)
    token = DATABASES.set(dbs)
    try:
        yield dbs
    finally:
        DATABASES.reset(token)
        dbs.drop()


def backend() -> str:
    """The backend the current test runs on ("sqlite" unless each_backend chose another)."""
    dbs = DATABASES.get()
    return dbs.kind if dbs else "sqlite"


needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"captured feeds not found at {FIXTURES}"
)
# The browser tests drive Debian's Chromium through Playwright (no browser download).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or importlib.util.find_spec("playwright") is None,
    reason="needs Debian's chromium and the playwright package (.ci/run installs both)",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def smtp_server() -> Iterator[LocalSMTPServer]:
    """A recording server; whatever a test sent through it must be standards-clean."""
    from smtp_faults import assert_conformant

    with LocalSMTPServer() as server:
        yield server
    assert_conformant(server.received)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)


def write_config(
    tmp_path: Path,
    smtp_port: int,
    *,
    sources: str | None = None,
    newsletter_extra: str = "",
    extra: str = "",
) -> Path:
    """A config using the bundled sample feeds, a database in tmp_path and the given SMTP port."""
    sample = sample_dir()
    if sources is None:
        sources = f'''
[[sources]]
name = "arxiv-cs"
kind = "arxiv-rss"
url = "{sample / "arxiv-cs.xml"}"

[[sources]]
name = "hf-daily"
kind = "hf-daily"
url = "file://{sample / "hf-daily.json"}"
'''
    dbs = DATABASES.get()
    database = dbs.new() if dbs and dbs.kind != "sqlite" else "var/test.db"
    topics = (sample / "config.toml").read_text(encoding="utf-8")
    topics = topics[topics.index("[[topics]]") :]
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[newsletter]
name = "Test Digest"
sender = "Test Digest <digest@test.example>"
base_url = "https://digest.test.example"
database = "{database}"
unsubscribe_mailto = "unsubscribe@test.example"
{newsletter_extra}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
timeout = 5
{sources}
{topics}
{extra}
""",
        encoding="utf-8",
    )
    return path


CLI = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def demo_roster() -> Path:
    return bundled("subscribers") / "demo.toml"


def setup_edition(
    tmp_path: Path,
    port: int,
    people: Mapping[str, tuple[str, ...]],
    *,
    newsletter_extra: str = "",
    extra: str = "",
) -> tuple[Config, Store]:
    """A config on the sample feeds, these subscribers, and the sample collected at NOW."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp_path, port, newsletter_extra=newsletter_extra, extra=extra)
    config = load_config(path)
    store = Store.open(config.database_url())
    for email, topics in people.items():
        store.upsert_subscriber(Subscriber(0, email, topics=topics), NOW)
    fetcher = HttpFetcher()
    collect(store, source_specs(config), fetcher, NOW)
    fetcher.close()
    return config, store


def send_once(
    config: Config,
    store: Store,
    port: int,
    now: datetime = NOW,
    timeout: float = 5,
    **settings: object,
) -> RunReport:
    """One ``send_edition`` run through 127.0.0.1:port with these delivery settings."""
    options: dict[str, object] = {"connections": 2, "retry_base": 0.01, **settings}

    def connect() -> SMTPSender:
        return SMTPSender(
            "127.0.0.1",
            port,
            timeout=timeout,
            max_per_connection=int(options.get("max_per_connection", 100)),  # type: ignore[call-overload]
        )

    ctx = SendContext(
        config,
        store,
        connect,
        Signer([SECRET]),
        SECRET,
        now,
        settings=DeliverySettings(**options),  # type: ignore[arg-type]
    )
    return asyncio.run(send_edition(ctx))


def stored_paper(pid: str, title: str, **kw: object) -> StoredPaper:
    """A stored paper for render tests; ``kw`` overrides any field."""
    base: dict[str, object] = dict(
        id=pid,
        title=title,
        abstract="An abstract about " + title.lower() + ".",
        authors=("Ada Lovelace", "Alan Turing"),
        categories=("cs.CL", "cs.LG"),
        url=f"https://arxiv.org/abs/{pid}",
        pdf_url=f"https://arxiv.org/pdf/{pid}",
        code_url=None,
        project_url=None,
        summary=None,
        keywords=(),
        version=1,
        published=None,
        first_seen=datetime(2026, 11, 24, tzinfo=UTC),
        sources=("arxiv",),
        signals=Signals(),
    )
    base.update(kw)
    return StoredPaper(**base)  # type: ignore[arg-type]
