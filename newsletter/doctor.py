"""`newsletter doctor`: everything the list needs, checked without sending or writing.

Each check is a small function whose edges come in as arguments (an HTTP client, a TXT
resolver, an SMTP connection factory), so tests can drive them against real local servers.
A check gives one or more ``Check`` lines. ``required`` lines are what ``send`` cannot do
without (config, keys, templates, database, SMTP connect/EHLO/TLS/AUTH): a failure there
is exit 1. The rest (sources, DNS, base_url) only warn: collect goes on past one source,
DNS records and the web app may be looked after elsewhere. No line ever holds a secret:
every detail is scrubbed of the SMTP password, the database password and the signing keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import aiosmtplib
import dkim
import dns.exception
import dns.resolver
import httpx
import jinja2
from sqlalchemy import create_engine, func, make_url, select
from sqlalchemy.exc import SQLAlchemyError

from newsletter import __version__
from newsletter.config import Config, SourceConfig
from newsletter.deliver import tls_context
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail import sender_domain
from newsletter.models import Digest, Subscriber

Status = Literal["ok", "fail", "warn", "skip"]
TxtResolver = Callable[[str], Sequence[str]]  # TXT strings at a name; raises dnspython errors
SMTPFactory = Callable[..., aiosmtplib.SMTP]
NO_DNS = "skipped: no DNS"
_DKIM_PROBE = (
    b"From: probe@example.org\r\nTo: probe@example.org\r\nSubject: probe\r\n"
    b"List-Unsubscribe: <https://example.org/u>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nprobe\r\n"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist."""

    name: str
    status: Status
    detail: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        """A failure that makes ``doctor`` exit 1."""
        return self.required and self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(exc: BaseException) -> str:
    """One line for an error: the server's reply, aiosmtplib's words, or class and message."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"[:300]
    if type(exc) is aiosmtplib.SMTPException:  # "STARTTLS extension not supported"...
        return str(exc)[:300]
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}"[:300] if text else exc.__class__.__name__


def check_config(load: Callable[[], Config], path: Path) -> tuple[Check, Config | None]:
    """The config file loads and validates; the other checks need it."""
    try:
        config = load()
    except NewsletterError as exc:
        return Check("config", "fail", str(exc)), None
    return Check(
        "config", "ok", f"{path}: {len(config.sources)} source(s), {len(config.topics)} topic(s)"
    ), config


def check_keys(config: Config) -> Check:
    """The signing key (links, tokens) and the DKIM key, which every send reads at start."""
    from newsletter.sending import dkim_signer

    try:
        keys = config.signing_keys()
        parts = [
            f"signing key from {config.newsletter.secret_file or config.newsletter.secret_env}"
            + (f" (+{len(keys) - 1} previous)" if len(keys) > 1 else "")
        ]
        if dkim_signer(config) is not None:
            parts.append(f"DKIM key {config.dkim.key_file} signs")
    except NewsletterError as exc:
        return Check("keys", "fail", str(exc))
    return Check("keys", "ok", "; ".join(parts))


def check_email_templates(config: Config) -> Check:
    """The digest and confirmation templates compile (MJML, Jinja) and render a sample."""
    from newsletter.pipeline import renderer_for
    from newsletter.render import Links

    base = config.newsletter.base_url
    try:
        renderer = renderer_for(config)  # compiles digest.mjml.j2, digest.txt.j2, the subject
        digest = Digest(Subscriber(0, "reader@example.org"), date(2026, 1, 1), ())
        renderer.render(digest, Links(f"{base}/u/x", f"{base}/a/x", f"{base}/p/x"))
        renderer.render_confirmation(f"{base}/confirm/x")  # confirm.mjml.j2, confirm.txt.j2
    except NewsletterError as exc:
        return Check("email templates", "fail", str(exc))
    except Exception as exc:  # an operator's template can raise anything while rendering
        return Check("email templates", "fail", f"rendering failed: {_describe(exc)}")
    where = config.templates_dir() or "bundled"
    return Check("email templates", "ok", f"digest and confirmation compile and render ({where})")


def check_web_templates(config: Config) -> Check:
    """Every web page template (``templates_dir/web`` over the bundled ones) compiles."""
    from newsletter.web.pages import Pages

    nl = config.newsletter
    try:
        pages = Pages(
            {"name": nl.name, "postal_address": nl.postal_address, "base_url": nl.base_url},
            config.templates_dir(),
        )
        names = [n for n in pages.env.list_templates() if n.endswith(".html")]
        for name in names:
            pages.env.get_template(name)
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or getattr(exc, "name", None) or "web template"
        line = getattr(exc, "lineno", None)
        at = f"{where}: line {line}" if line else str(where)
        return Check("web templates", "fail", f"{at}: {exc.message or exc}")
    return Check("web templates", "ok", f"{len(names)} pages and site.css compile")


def check_database(config: Config) -> Check:
    """The database opens (read-only for SQLite) and its schema is the latest.

    ``Store.open`` would create or upgrade it; doctor only reads ``schema_migrations``.
    """
    from newsletter.store import schema
    from newsletter.store.migrations import LATEST, current_version

    url, where = config.database_url(), "the database"
    hint = "any command that opens it upgrades it in place, e.g. `newsletter papers`"
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            made = "the first collect, send or subscribers import creates it"
            return Check("database", "fail", f"no database at {path} ({made})")
        where, url = str(path), f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    else:
        with suppress(SQLAlchemyError):  # an invalid URL: create_engine says why, below
            where = make_url(url).render_as_string(hide_password=True)
    try:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                version = current_version(conn)
                counts = {
                    table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (schema.papers, schema.subscribers)
                    if version == LATEST
                }
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        orig = getattr(exc, "orig", None) or exc
        return Check("database", "fail", f"cannot open {where}: {_describe(orig)}")
    if version > LATEST:
        newer = f"schema version {version} is newer than this release knows ({LATEST})"
        return Check("database", "fail", f"{where}: {newer}: upgrade newsletter")
    if version < LATEST:
        state = f"schema version {version}" if version else "no schema"
        return Check("database", "fail", f"{where}: {state}, this release needs {LATEST} ({hint})")
    rows = f"{counts['papers']} papers, {counts['subscribers']} subscribers"
    return Check("database", "ok", f"{where}: schema version {version} (latest), {rows}")


def check_source(config: Config, source: SourceConfig, http: httpx.Client) -> Check:
    """An http(s) source answers, or a local capture (replayable) exists and is readable."""
    name, location = f"source {source.name}", config.source_location(source)
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        try:
            with http.stream("GET", location) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            return Check(name, "warn", f"{location}: not reachable: {_describe(exc)}", False)
        ok: Status = "ok" if status < 400 else "warn"
        return Check(name, ok, f"{source.kind} {location}: HTTP {status}", False)
    path = Path(unquote(urlsplit(location).path)) if scheme == "file" else Path(location)
    if path.is_file() and os.access(path, os.R_OK):
        size = path.stat().st_size
        return Check(name, "ok", f"{source.kind} {path}: local file, {size} bytes", False)
    return Check(name, "warn", f"{path}: missing or not readable", False)


async def check_smtp(
    config: Config,
    password: Callable[[], str | None],
    factory: SMTPFactory = aiosmtplib.SMTP,
) -> list[Check]:
    """Connect, EHLO, TLS (implicit or STARTTLS), AUTH, QUIT: all of a send but the mail.

    A failure is reported on the step it happened in; the steps after it are skipped.
    """
    s = config.smtp
    tls_name = "SMTP TLS" if s.security == "tls" else "SMTP STARTTLS"
    names = ["SMTP connect", "SMTP EHLO", tls_name, "SMTP AUTH"]
    lines: list[Check] = []
    smtp: aiosmtplib.SMTP | None = None
    methods = ""

    def tls_info() -> str:
        assert smtp is not None
        ssl_object = smtp.get_transport_info("ssl_object")
        verified = f"certificate verified against {s.ca_file or 'the system CAs'}"
        return f"{ssl_object.version()}, {ssl_object.cipher()[0]}, {verified}"

    try:
        try:
            context = tls_context(str(config.resolve(s.ca_file)) if s.ca_file else None)
        except OSError as exc:  # ssl.SSLError is one too
            raise ConfigError(f"smtp.ca_file {s.ca_file}: {_describe(exc)}") from None
        smtp = factory(
            hostname=s.host,
            port=s.port,
            timeout=min(s.timeout, 15.0),
            use_tls=s.security == "tls",
            start_tls=False,
            tls_context=context,
        )
        greeting = await smtp.connect()
        banner = f"{s.host}:{s.port}: {greeting.code} {_first_line(greeting.message)}"
        lines.append(Check("SMTP connect", "ok", banner))
        lines.append(Check("SMTP EHLO", "ok", _ehlo_detail(smtp, await smtp.ehlo())))
        if s.security == "starttls":
            await smtp.starttls(tls_context=context)
            await smtp.ehlo()  # RFC 3207: what the server said before TLS is forgotten
            lines.append(Check(tls_name, "ok", tls_info()))
        elif s.security == "tls":
            lines.append(Check(tls_name, "ok", f"implicit TLS: {tls_info()}"))
        elif smtp.supports_extension("starttls"):
            clear = "the server offers STARTTLS but smtp.security is none: mail goes unencrypted"
            lines.append(Check(tls_name, "warn", clear))
        else:
            lines.append(Check(tls_name, "skip", "smtp.security is none"))
        if not s.username:
            return [*lines, Check("SMTP AUTH", "skip", "no smtp.username: not logging in")]
        methods = " ".join(smtp.server_auth_methods).upper() or "no AUTH offered"
        reply = await smtp.login(s.username, password() or "")
        accepted = f"{s.username} accepted ({methods}): {reply.code} {reply.message}"
        if smtp.get_transport_info("sslcontext") is None:
            return [*lines, Check("SMTP AUTH", "warn", f"{accepted}, but without TLS")]
        return [*lines, Check("SMTP AUTH", "ok", accepted)]
    except (aiosmtplib.SMTPException, OSError, NewsletterError) as exc:
        failed = names[len(lines)]
        detail = str(exc) if isinstance(exc, NewsletterError) else _describe(exc)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            detail = f"{s.username} refused ({methods}): {detail}"
        cause = f"not tried: {failed.removeprefix('SMTP ')} failed"
        return [
            *lines,
            Check(failed, "fail", detail),
            *(Check(n, "skip", cause) for n in names[len(lines) + 1 :]),
        ]
    finally:
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _ehlo_detail(smtp: aiosmtplib.SMTP, hello: aiosmtplib.SMTPResponse) -> str:
    """The server's name, its size limit and whether it takes SMTPUTF8 (for IDN addresses)."""
    size = smtp.esmtp_extensions.get("size", "").strip()
    limit = f"size limit {int(size) / 2**20:g} MiB" if size.isdigit() and int(size) else ""
    utf8 = f"SMTPUTF8 {'yes' if smtp.supports_extension('smtputf8') else 'no'}"
    return "; ".join(x for x in (_first_line(hello.message) or "(no name)", limit, utf8) if x)


def dns_txt(name: str) -> list[str]:
    """The real resolver: TXT strings at ``name`` (each record's strings joined)."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = 3.0
    answer = resolver.resolve(name, "TXT")
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


_UNREACHABLE = (
    dns.resolver.NoNameservers,
    dns.exception.Timeout,
    dns.resolver.NoResolverConfiguration,
)


class _NoDNS(Exception):
    """No resolver answers (no nameserver, a timeout, no resolv.conf, or one that lies)."""


def _txt(resolve: TxtResolver, name: str) -> list[str] | None:
    """TXT strings at ``name``: [] when it has none, None when the name does not exist."""
    try:
        return [str(t) for t in resolve(name)]
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except _UNREACHABLE:
        raise _NoDNS from None


def check_dns(config: Config, resolve: TxtResolver) -> list[Check]:
    """SPF and DMARC for the sender's domain, and the DKIM record matching the key.

    A sender domain that "does not exist" is checked once more against the root: a
    resolver that denies the root too is no DNS at all, so each line is skipped.
    """
    domain = sender_domain(config.newsletter.sender)
    names = ("DNS SPF", "DNS DMARC", "DNS DKIM")
    try:
        spf = _txt(resolve, domain)
        if spf is None and _txt(resolve, ".") is None:
            raise _NoDNS
        dmarc = _txt(resolve, f"_dmarc.{domain}")
        return [
            _policy("DNS SPF", domain, spf, "v=spf1"),
            _policy("DNS DMARC", f"_dmarc.{domain}", dmarc, "v=DMARC1"),
            _dkim(config, resolve),
        ]
    except _NoDNS:
        return [Check(n, "skip", NO_DNS, False) for n in names]
    except dns.exception.DNSException as exc:
        return [Check(n, "warn", _describe(exc), False) for n in names]


def _policy(line: str, name: str, records: list[str] | None, tag: str) -> Check:
    """Exactly one TXT record starting with ``tag`` at ``name`` (two is an error too)."""
    if records is None and line == "DNS SPF":
        return Check(line, "warn", f"{name} does not exist in DNS", False)
    found = [r for r in records or [] if r.lower().startswith(tag.lower())]
    if len(found) != 1:
        what = f"{len(found)} {tag} records" if found else f"no {tag} record"
        return Check(line, "warn", f"{what} at {name} (receivers want exactly one)", False)
    return Check(line, "ok", f"{name}: {found[0][:160]}", False)


def _dkim(config: Config, resolve: TxtResolver) -> Check:
    from newsletter.sending import dkim_signer

    d = config.dkim
    if not (d.selector and d.domain):
        return Check("DNS DKIM", "skip", "no [dkim] configured: messages go unsigned", False)
    name = f"{d.selector}._domainkey.{d.domain}"
    found = [r for r in _txt(resolve, name) or [] if "p=" in r.replace(" ", "")]
    if not found:
        return Check("DNS DKIM", "warn", f"no DKIM record (TXT with p=) at {name}", False)
    try:
        signer = dkim_signer(config)
    except NewsletterError:
        signer = None  # the keys line says why
    record = found[0].encode()
    quiet = logging.Logger("doctor.dkim", logging.CRITICAL + 1)  # its reasons go nowhere
    signed = signer.sign(_DKIM_PROBE) if signer else b""
    if not signed or not dkim.verify(signed, quiet, dnsfunc=lambda *a, **k: record):
        other = "does not verify a signature made with dkim.key_file (another key?)"
        return Check("DNS DKIM", "warn", f"{name}: {other}", False)
    return Check("DNS DKIM", "ok", f"{name}: matches dkim.key_file", False)


def check_base_url(base_url: str, http: httpx.Client) -> Check:
    """The web app answers at ``base_url`` (its /healthz says "ok"); links in emails go there.

    A warning only: the app may run on another host than this one can reach.
    """
    url = f"{base_url}/healthz"
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        return Check("base_url", "warn", f"{url}: not reachable: {_describe(exc)}", False)
    if response.status_code == 200 and response.text.strip() == "ok":
        return Check("base_url", "ok", f"{url}: 200 ok", False)
    got = f"HTTP {response.status_code}, expected 200 ok from newsletter serve"
    return Check("base_url", "warn", f"{url}: {got}", False)


def secrets_of(config: Config) -> list[str]:
    """Every secret the config can reach (SMTP and database passwords, signing keys)."""
    found: list[str | None] = []
    with suppress(SQLAlchemyError):
        found.append(make_url(config.database_url()).password)
    for get in (config.smtp_password, config.signing_keys):
        try:
            value = get()
        except NewsletterError:
            continue
        found += value if isinstance(value, list) else [value]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(checks: list[Check], secrets: Sequence[str]) -> list[Check]:
    """The checks with every secret in a detail replaced by ``***`` (longest first)."""
    for secret in secrets:
        checks = [replace(c, detail=c.detail.replace(secret, "***")) for c in checks]
    return checks


def run_doctor(
    config: Config,
    *,
    resolve: TxtResolver | None = None,
    http: httpx.Client | None = None,
    smtp_factory: SMTPFactory | None = None,
) -> list[Check]:
    """Every check after the config's own, in order; the edges default to the real ones."""
    client = http or httpx.Client(
        timeout=httpx.Timeout(5.0),
        follow_redirects=True,
        headers={"User-Agent": f"newsletter/{__version__} (doctor)"},
    )
    try:
        checks = [check_keys(config), check_email_templates(config)]
        checks += [check_web_templates(config), check_database(config)]
        checks += [check_source(config, s, client) for s in config.sources]
        checks += asyncio.run(
            check_smtp(config, config.smtp_password, smtp_factory or aiosmtplib.SMTP)
        )
        checks += check_dns(config, resolve or dns_txt)
        checks.append(check_base_url(config.newsletter.base_url, client))
    finally:
        if http is None:
            client.close()
    return scrub(checks, secrets_of(config))
