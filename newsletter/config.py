"""Load ``config.toml`` into pydantic models; one clear line for anything wrong.

Unknown keys are rejected, relative paths resolve against the config file's folder, and
secrets only come from ``*_env`` (an environment variable name) or ``*_file`` (a path).
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from newsletter.config_delivery import DeliverySection, DkimSection, SMTPSection
from newsletter.config_schedule import ScheduleSection
from newsletter.config_web import WebSection
from newsletter.errors import ConfigError
from newsletter.logs import register_secret
from newsletter.models import Topic

if TYPE_CHECKING:
    from newsletter.rank import RankSettings

SOURCE_KINDS = ("arxiv-rss", "arxiv-api", "hf-daily", "feed")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewsletterSection(_Strict):
    name: str = "Research digest"
    sender: str = "Research digest <digest@localhost>"
    base_url: str = "http://127.0.0.1:8000"
    database: str = "var/newsletter.db"
    secret_env: str = "NEWSLETTER_SECRET"
    secret_file: str | None = None
    database_password_env: str | None = None
    database_password_file: str | None = None
    previous_secrets_env: str | None = None
    previous_secrets_file: str | None = None
    timezone: str = "UTC"
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    postal_address: str = ""
    templates_dir: str | None = None

    @field_validator("sender")
    @classmethod
    def _sender_has_address(cls, value: str) -> str:
        from email.utils import parseaddr

        _, addr = parseaddr(value)
        if "@" not in addr or any(c in value for c in "\r\n\0"):
            raise ValueError('expected "Name <address@domain>"')
        return value

    @field_validator("database")
    @classmethod
    def _no_password_in_url(cls, value: str) -> str:
        if "://" in value:
            from sqlalchemy import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                url = make_url(value)
            except ArgumentError:
                raise ValueError("expected a path or an SQLAlchemy URL") from None
            if url.password:
                raise ValueError(
                    "no password in the URL: use database_password_env or database_password_file"
                )
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError("expected an IANA time zone such as Europe/Berlin") from exc
        return value


_SOURCE_OPTIONS: dict[str, frozenset[str]] = {
    "include_cross": frozenset({"arxiv-rss"}),
    "query": frozenset({"arxiv-api"}),
    "categories": frozenset({"arxiv-api"}),
    "page_size": frozenset({"arxiv-api"}),
    "max_results": frozenset({"arxiv-api"}),
    "days": frozenset({"arxiv-api", "hf-daily"}),
}


class SourceConfig(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["arxiv-rss", "arxiv-api", "hf-daily", "feed"]
    url: str = Field(min_length=1)
    include_cross: bool = True
    query: str | None = None
    categories: list[str] = []
    days: int = Field(default=2, ge=1, le=30)
    page_size: int = Field(default=100, ge=1, le=2000)
    max_results: int = Field(default=1000, ge=1, le=30000)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if sep and scheme.lower() not in ("http", "https", "file"):
            raise ValueError("expected an http(s):// or file:// URL, or a local path")
        return value

    @model_validator(mode="after")
    def _options_fit_kind(self) -> SourceConfig:
        for key in sorted(self.model_fields_set & _SOURCE_OPTIONS.keys()):
            kinds = _SOURCE_OPTIONS[key]
            if self.kind not in kinds:
                raise ValueError(f"{key} applies only to kind {' or '.join(sorted(kinds))}")
        return self


class FetchSection(_Strict):
    contact: str = ""
    timeout: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    retries: int = Field(default=3, ge=0, le=10)
    max_retry_wait: float = Field(default=120.0, ge=0)
    min_interval: float = Field(default=1.0, ge=0)
    host_intervals: dict[str, float] = {}


class CalendarSection(_Strict):
    arxiv_holidays: list[date] = []


class TopicConfig(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    keywords: list[str] = []
    categories: list[str] = []
    description: str = ""
    authors: list[str] = []

    def to_topic(self) -> Topic:
        return Topic(
            id=self.id,
            name=self.name,
            keywords=tuple(self.keywords),
            categories=tuple(self.categories),
            description=self.description,
            authors=tuple(self.authors),
        )


class DigestSection(_Strict):
    max_papers: int = Field(default=10, ge=1, le=100)
    lookback_days: int = Field(default=7, ge=1, le=365)
    send_empty: bool = False
    layout: Literal["ranked", "topics"] = "ranked"
    subject: str = Field(
        default="{{ top }}{% if more %} + {{ more }} more{% endif %}", min_length=1, max_length=500
    )


class RankingSection(_Strict):
    threshold: float = Field(default=0.12, ge=0)
    weight_relevance: float = Field(default=1.0, ge=0)
    weight_trending: float = Field(default=0.5, ge=0)
    weight_recency: float = Field(default=0.25, ge=0)
    recency_half_life_days: float = Field(default=3.0, gt=0)
    diversity: float = Field(default=0.3, ge=0, le=1)
    max_topic_share: float = Field(default=0.6, gt=0, le=1)
    category_boost: float = Field(default=0.25, ge=0)
    author_boost: float = Field(default=0.5, ge=0)
    semantic: Literal["auto", "off"] = "auto"
    semantic_weight: float = Field(default=0.5, ge=0)
    semantic_floor: float = Field(default=0.2, ge=-1, le=1)

    def settings(self) -> RankSettings:
        from newsletter.rank import RankSettings
        from newsletter.rank.relevance import Boosts
        from newsletter.rank.trending import TrendWeights

        return RankSettings(
            threshold=self.threshold,
            weight_relevance=self.weight_relevance,
            weight_trending=self.weight_trending,
            weight_recency=self.weight_recency,
            diversity=self.diversity,
            max_topic_share=self.max_topic_share,
            boosts=Boosts(category=self.category_boost, author=self.author_boost),
            trend=TrendWeights(half_life_days=self.recency_half_life_days),
            semantic_weight=self.semantic_weight,
            semantic_floor=self.semantic_floor,
        )


class Config(_Strict):
    newsletter: NewsletterSection = NewsletterSection()
    smtp: SMTPSection = SMTPSection()
    delivery: DeliverySection = DeliverySection()
    dkim: DkimSection = DkimSection()
    sources: list[SourceConfig] = []
    topics: list[TopicConfig] = []
    digest: DigestSection = DigestSection()
    ranking: RankingSection = RankingSection()
    fetch: FetchSection = FetchSection()
    calendar: CalendarSection = CalendarSection()
    web: WebSection = WebSection()
    schedule: ScheduleSection = ScheduleSection()
    base_dir: Path = Path(".")

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, value: list[TopicConfig]) -> list[TopicConfig]:
        _no_repeats([t.id for t in value], "topic ids")
        return value

    @field_validator("dkim")
    @classmethod
    def _dkim_complete(cls, value: DkimSection) -> DkimSection:
        given = [value.selector, value.domain, value.key_file]
        if any(given) and not all(given):
            raise ValueError("selector, domain and key_file go together: set all three or none")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_transaction(self) -> Config:
        longest = self.smtp.data_timeout + 4 * self.smtp.timeout
        if self.delivery.lease_seconds < longest:
            raise ValueError(
                f"delivery.lease_seconds ({self.delivery.lease_seconds:g}) must exceed one "
                f"transaction's longest wait, smtp.data_timeout + 4 x smtp.timeout ({longest:g})"
            )
        return self

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        _no_repeats([s.name for s in value], "source names")
        return value

    # Derived values, computed from the fields; the CLI reads these, never the raw strings.

    def topic_values(self) -> tuple[Topic, ...]:
        return tuple(t.to_topic() for t in self.topics)

    def database_url(self) -> str:
        """The SQLAlchemy URL: a path is a SQLite file; a server URL gets its password from
        ``database_password_env`` or ``database_password_file`` (never from the config)."""
        db = self.newsletter.database
        if "://" not in db:
            return f"sqlite:///{self.resolve(db)}"
        nl = self.newsletter
        password = None
        if nl.database_password_file:
            password = _read_secret_file(
                self.resolve(nl.database_password_file), "newsletter.database_password_file"
            )
        elif nl.database_password_env:
            password = os.environ.get(nl.database_password_env)
            if password is None:
                raise ConfigError(
                    f"newsletter.database_password_env names {nl.database_password_env}, "
                    "which is not set",
                    hint="export it before running, or remove database_password_env",
                )
        if password is None:
            return db
        from sqlalchemy import make_url

        register_secret(password)
        return make_url(db).set(password=password).render_as_string(hide_password=False)

    def lock_path(self) -> Path:
        """The run lock: beside a SQLite file, else ``var/newsletter.lock`` by the config."""
        db = self.newsletter.database
        if "://" not in db:
            return self.resolve(db).with_suffix(".lock")
        if db.startswith("sqlite:///") and not db.endswith(":memory:"):
            return Path(db.removeprefix("sqlite:///")).with_suffix(".lock")
        return self.resolve("var/newsletter.lock")

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def source_location(self, source: SourceConfig) -> str:
        """The source's URL, with local paths made absolute (``file://`` stays a URL)."""
        url = source.url
        if url.startswith(("http://", "https://", "file://")):
            return url
        return str(self.resolve(url))

    def holidays(self, around: date) -> frozenset[date]:
        """arXiv holidays near ``around``: the yearly defaults plus the configured ones."""
        from newsletter.schedule import default_holidays

        years = {around.year - 1, around.year, around.year + 1}
        return default_holidays(years) | frozenset(self.calendar.arxiv_holidays)

    def templates_dir(self) -> Path | None:
        d = self.newsletter.templates_dir
        return self.resolve(d) if d else None

    def secret(self) -> str:
        """The signing key, from ``secret_file`` or the env var named by ``secret_env``."""
        nl = self.newsletter
        if nl.secret_file:
            return _read_secret_file(self.resolve(nl.secret_file), "newsletter.secret_file")
        value = os.environ.get(nl.secret_env, "")
        if len(value) < 16:
            raise ConfigError(
                f"the signing key is missing: environment variable {nl.secret_env} is "
                + ("too short" if value else "not set"),
                hint="set it to a random string of at least 16 characters, "
                'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"',
            )
        return value

    def signing_keys(self) -> list[str]:
        """Every key that verifies a token, the current one (which signs) last: links in
        emails sent before a key rotation keep working while the old key is listed."""
        nl = self.newsletter
        older: list[str] = []
        if nl.previous_secrets_file:
            text = _read_secret_file(
                self.resolve(nl.previous_secrets_file), "newsletter.previous_secrets_file"
            )
            older += text.split()
        if nl.previous_secrets_env:
            older += os.environ.get(nl.previous_secrets_env, "").split()
        current = self.secret()
        for key in (*older, current):
            register_secret(key)
        return [k for k in older if k != current] + [current]

    def envelope_from(self) -> str:
        """MAIL FROM (the Return-Path bounces go to): ``smtp.envelope_from`` or the sender."""
        from email.utils import parseaddr

        return self.smtp.envelope_from or parseaddr(self.newsletter.sender)[1]

    def dkim_key(self) -> bytes | None:
        """The DKIM private key (PEM), read from ``dkim.key_file``; None when not signing."""
        if self.dkim.key_file is None:
            return None
        return _read_secret_file(self.resolve(self.dkim.key_file), "dkim.key_file").encode()

    def smtp_password(self) -> str | None:
        """The SMTP password (registered so no log line can ever show it)."""
        s = self.smtp
        value: str | None = None
        if s.password_file:
            value = _read_secret_file(self.resolve(s.password_file), "smtp.password_file")
        elif s.password_env:
            value = os.environ.get(s.password_env)
            if value is None:
                raise ConfigError(
                    f"smtp.password_env names {s.password_env}, which is not set",
                    hint="export it before running, or remove password_env",
                )
        register_secret(value, s.username)
        return value


def _no_repeats(values: list[str], what: str) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique, repeated: {', '.join(dupes)}")


def _read_secret_file(path: Path, key: str) -> str:
    try:
        if path.stat().st_mode & 0o004:
            raise ConfigError(
                f"{key}: {path} is readable by everyone",
                hint=f"chmod 600 {path}",
            )
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    loc = _format_loc(tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc}"
    if kind == "missing":
        return f"{loc} is required"
    value = error.get("input")
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{loc} = {shown}: {msg[0].lower() + msg[1:] if msg else msg}"


def config_from_dict(data: dict[str, Any], base_dir: Path, origin: str) -> Config:
    """Validate a parsed TOML document; ``origin`` names it in errors."""
    if "base_dir" in data:
        raise ConfigError(f"{origin}: unknown key base_dir")
    try:
        return Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(
            f"{origin}: {_describe(dict(errors[0]))}{more}",
            hint="see config.example.toml for every key",
        ) from None


def load_config(path: Path) -> Config:
    """Read and validate one config file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {path}",
            hint="pass --config PATH, set NEWSLETTER_CONFIG, or copy config.example.toml",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, path.resolve().parent, str(path))
