"""`newsletter doctor` against real parts: aiosmtpd with STARTTLS/TLS and AUTH (trustme
certificates), SQLite files, a local HTTP server; DNS through an injected TXT resolver.

The SMTP password is a real one the server checks; no output, JSON or log record may
ever hold it, whether the login succeeds or not.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from smtp_auth import PKI, AuthCheck, make_pki
from sqlalchemy import create_engine, text

from conftest import CLI, write_config
from newsletter import doctor
from newsletter.config import Config, load_config
from newsletter.doctor import NO_DNS, Check, check_dns, run_doctor, scrub
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler
from newsletter.store import Store
from newsletter.store.migrations import LATEST

USER = "mailer"
PASSWORD = "s3cret-Pa55word-for-doctor"
WRONG = "Wr0ng-pa55word-guess"
SMTP_LINES = ("SMTP connect", "SMTP EHLO", "SMTP STARTTLS", "SMTP AUTH")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _no_dns(name: str) -> Sequence[str]:
    raise dns.resolver.NoNameservers


@pytest.fixture(autouse=True)
def _offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's real resolver is replaced by one with no nameservers (tests stay offline)."""
    monkeypatch.setattr(doctor, "dns_txt", _no_dns)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    tmp_path: Path,
    port: int,
    *,
    smtp: str = "",
    base_url: str | None = None,
    newsletter_extra: str = "",
    extra: str = "",
    create_db: bool = True,
) -> Path:
    """write_config plus [smtp] keys, a base_url (default: a closed local port) and the
    database created at the latest schema."""
    path = write_config(tmp_path, port, newsletter_extra=newsletter_extra, extra=extra)
    url = base_url or f"http://127.0.0.1:{_closed_port()}"
    body = path.read_text(encoding="utf-8").replace("[smtp]\n", f"[smtp]\n{smtp}\n", 1)
    path.write_text(body.replace("https://digest.test.example", url, 1), encoding="utf-8")
    if create_db:
        Store.open(load_config(path).database_url()).close()
    return path


def _auth_smtp(pki: PKI, monkeypatch: pytest.MonkeyPatch, security: str = "starttls") -> str:
    monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", PASSWORD)
    return (
        f'security = "{security}"\nusername = "{USER}"\n'
        f'password_env = "DOCTOR_SMTP_PASSWORD"\nca_file = "{pki.ca_file}"'
    )


def _starttls_server(ctx: ssl.SSLContext, auth: AuthCheck) -> LocalSMTPServer:
    return LocalSMTPServer(
        RecordingHandler(),
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
    )


def _by_name(checks: Sequence[Check] | list[dict[str, Any]]) -> dict[str, Check]:
    rows = [c if isinstance(c, Check) else Check(**c) for c in checks]
    return {c.name: c for c in rows}


def _run_json(cli: CLI, config: Path) -> tuple[int, dict[str, Check], str, str]:
    code, out, err = cli("--config", config, "doctor", "--json")
    return code, _by_name(json.loads(out)), out, err


# ---- SMTP ---------------------------------------------------------------------------------


def test_good_credentials_every_smtp_line_ok_and_nothing_sent(
    cli: CLI, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.server_ctx, auth) as server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch))
        code, out, err = cli("--config", config, "doctor")
        json_code, checks, _, _ = _run_json(cli, config)
    assert code == 0 and json_code == 0, out + err
    for name in SMTP_LINES:
        assert checks[name].status == "ok", checks[name]
        assert checks[name].required
    assert "localhost" in checks["SMTP EHLO"].detail  # the server's name
    assert "size limit 32 MiB" in checks["SMTP EHLO"].detail  # aiosmtpd's default
    assert "SMTPUTF8 no" in checks["SMTP EHLO"].detail
    assert "TLSv1." in checks["SMTP STARTTLS"].detail
    assert pki.ca_file in checks["SMTP STARTTLS"].detail
    assert checks["SMTP AUTH"].detail.startswith(f"{USER} accepted")
    assert auth.attempts == [USER, USER]  # one login per run, over TLS
    assert server.received == []  # nothing was sent
    for line in SMTP_LINES:
        assert f"✓ {line}" in out
    assert "All required checks passed" in out


def test_bad_password_fails_auth_and_exits_1(
    cli: CLI, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.server_ctx, auth) as server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch))
        monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", WRONG)
        code, out, _ = cli("--config", config, "doctor")
        json_code, checks, _, _ = _run_json(cli, config)
    assert code == json_code == 1
    assert [checks[n].status for n in SMTP_LINES] == ["ok", "ok", "ok", "fail"]
    assert "535" in checks["SMTP AUTH"].detail and USER in checks["SMTP AUTH"].detail
    assert "✗ SMTP AUTH" in out and "1 required check(s) failed" in out
    assert auth.attempts and set(auth.attempts) == {USER}
    assert server.received == []


@pytest.mark.parametrize("password", [PASSWORD, WRONG], ids=["good", "bad"])
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_the_password_is_in_no_output_json_or_log_record(
    cli: CLI,
    tmp_path: Path,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    password: str,
    security: str,
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    if security == "tls":
        server = LocalSMTPServer(
            listen_ssl=pki.server_ctx, auth_require_tls=False, authenticator=auth
        )
    else:
        server = _starttls_server(pki.server_ctx, auth)
    with server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch, security))
        monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", password)
        with caplog.at_level(logging.DEBUG):  # first: the CLI resets the logging handlers
            checks = run_doctor(load_config(config))
        outputs = [*cli("--config", config, "doctor")[1:]]
        outputs += cli("--config", config, "doctor", "--json")[1:]
    assert _by_name(checks)["SMTP AUTH"].status == ("ok" if password == PASSWORD else "fail")
    assert len(auth.attempts) >= 3  # the server really saw each login
    text = "\n".join([*outputs, json.dumps([c.as_dict() for c in checks])])
    assert password not in text
    assert caplog.records, "expected the client and server to log at DEBUG"
    assert all(password not in r.getMessage() for r in caplog.records)
    # nor encoded as on the wire (AUTH LOGIN / PLAIN), except in the test server's own log
    encoded = [base64.b64encode(v.encode()).decode() for v in (password, f"\0{USER}\0{password}")]
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert not [m for m in ours for e in encoded if e in m]


def test_server_down_fails_connect_and_skips_the_rest(cli: CLI, tmp_path: Path) -> None:
    config = _config(tmp_path, _closed_port())
    code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["SMTP connect"].status == "fail"
    assert "Connect call failed" in checks["SMTP connect"].detail
    for name in SMTP_LINES[1:]:
        assert checks[name].status == "skip"
        assert checks[name].detail == "not tried: connect failed"


def test_starttls_with_a_certificate_from_another_ca_fails_before_auth(
    cli: CLI, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.rogue_ctx, auth) as server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch))
        code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["SMTP STARTTLS"].status == "fail"
    assert "CERTIFICATE_VERIFY_FAILED" in checks["SMTP STARTTLS"].detail
    assert checks["SMTP AUTH"].status == "skip"
    assert auth.attempts == []  # the password never went to the impostor


def test_implicit_tls_with_auth(
    cli: CLI, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    server = LocalSMTPServer(listen_ssl=pki.server_ctx, auth_require_tls=False, authenticator=auth)
    with server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch, "tls"))
        code, checks, _, _ = _run_json(cli, config)
    assert code == 0
    assert checks["SMTP TLS"].status == "ok"
    assert checks["SMTP TLS"].detail.startswith("implicit TLS: TLSv1.")
    assert checks["SMTP AUTH"].status == "ok" and auth.attempts == [USER]


def test_plain_server_without_username_skips_auth(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    config = _config(tmp_path, smtp_server.port)
    code, checks, _, _ = _run_json(cli, config)
    assert code == 0
    assert checks["SMTP STARTTLS"].status == "skip"
    assert checks["SMTP AUTH"].status == "skip"
    assert "no smtp.username" in checks["SMTP AUTH"].detail


def test_security_none_against_a_starttls_server_warns(cli: CLI, tmp_path: Path, pki: PKI) -> None:
    with LocalSMTPServer(tls_context=pki.server_ctx) as server:
        config = _config(tmp_path, server.port)
        code, checks, _, _ = _run_json(cli, config)
    assert code == 0
    assert checks["SMTP STARTTLS"].status == "warn"
    assert "smtp.security is none" in checks["SMTP STARTTLS"].detail


def test_password_env_not_set_fails_auth_with_the_config_message(
    cli: CLI, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = AuthCheck(USER, PASSWORD)
    with _starttls_server(pki.server_ctx, auth) as server:
        config = _config(tmp_path, server.port, smtp=_auth_smtp(pki, monkeypatch))
        monkeypatch.delenv("DOCTOR_SMTP_PASSWORD")
        code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["SMTP AUTH"].status == "fail"
    assert "DOCTOR_SMTP_PASSWORD, which is not set" in checks["SMTP AUTH"].detail
    assert auth.attempts == []


# ---- DNS ----------------------------------------------------------------------------------


def _resolver(
    records: dict[str, list[str]], error: type[Exception] = dns.resolver.NXDOMAIN
) -> Callable[[str], Sequence[str]]:
    """TXT answers by name; a name not listed raises ``error``; "." answers NoAnswer."""

    def resolve(name: str) -> Sequence[str]:
        if name in records:
            return records[name]
        if name == "." and error is dns.resolver.NXDOMAIN:
            raise dns.resolver.NoAnswer
        raise error

    return resolve


def _loaded(tmp_path: Path, **kw: Any) -> Config:
    return load_config(_config(tmp_path, _closed_port(), **kw))


def _dkim_key(folder: Path) -> tuple[str, str]:
    """A DKIM key file (mode 600) and the TXT record publishing its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return str(path), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


DKIM_CONFIG = '\n[dkim]\nselector = "s1"\ndomain = "test.example"\nkey_file = "{}"\n'


@pytest.mark.parametrize(
    "error",
    [
        dns.resolver.NoNameservers,
        dns.resolver.LifetimeTimeout,
        dns.resolver.NoResolverConfiguration,
        dns.resolver.NXDOMAIN,  # a resolver that denies even the root: no DNS either
    ],
)
def test_no_dns_skips_each_line(tmp_path: Path, error: type[Exception]) -> None:
    config = _loaded(tmp_path)

    def resolve(name: str) -> Sequence[str]:
        raise error

    checks = check_dns(config, resolve)
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("DNS SPF", "skip", NO_DNS),
        ("DNS DMARC", "skip", NO_DNS),
        ("DNS DKIM", "skip", NO_DNS),
    ]
    assert not any(c.required for c in checks)


def test_records_present_are_ok_and_dkim_matches_the_key(tmp_path: Path) -> None:
    key_file, record = _dkim_key(tmp_path)
    config = _loaded(tmp_path, extra=DKIM_CONFIG.format(key_file))
    resolve = _resolver(
        {
            "test.example": ["google-site-verification=abc", "v=spf1 ip4:192.0.2.1 -all"],
            "_dmarc.test.example": ["v=DMARC1; p=quarantine; rua=mailto:d@test.example"],
            "s1._domainkey.test.example": [record],
        }
    )
    checks = _by_name(check_dns(config, resolve))
    assert {n: c.status for n, c in checks.items()} == {
        "DNS SPF": "ok",
        "DNS DMARC": "ok",
        "DNS DKIM": "ok",
    }
    assert "v=spf1 ip4:192.0.2.1 -all" in checks["DNS SPF"].detail
    assert "p=quarantine" in checks["DNS DMARC"].detail
    assert "matches dkim.key_file" in checks["DNS DKIM"].detail


def test_missing_or_wrong_records_warn(tmp_path: Path) -> None:
    key_file, _ = _dkim_key(tmp_path)
    _, other_record = _dkim_key(tmp_path / "other")  # published: another key
    config = _loaded(tmp_path, extra=DKIM_CONFIG.format(key_file))
    resolve = _resolver(
        {
            "test.example": ["google-site-verification=abc"],
            "s1._domainkey.test.example": [other_record],
        }
    )
    checks = _by_name(check_dns(config, resolve))
    assert {n: c.status for n, c in checks.items()} == dict.fromkeys(checks, "warn")
    assert "no v=spf1 record" in checks["DNS SPF"].detail
    assert "no v=DMARC1 record" in checks["DNS DMARC"].detail
    assert "does not verify" in checks["DNS DKIM"].detail
    assert not any(c.required for c in checks.values())


def test_two_spf_records_and_a_domain_that_does_not_exist_warn(tmp_path: Path) -> None:
    config = _loaded(tmp_path)
    two = _by_name(
        check_dns(config, _resolver({"test.example": ["v=spf1 -all", "v=spf1 mx -all"]}))
    )
    assert two["DNS SPF"].status == "warn" and "2 v=spf1 records" in two["DNS SPF"].detail
    assert two["DNS DKIM"].status == "skip"  # no [dkim] configured
    gone = _by_name(check_dns(config, _resolver({})))  # NXDOMAIN, but the root answers
    assert gone["DNS SPF"].status == "warn"
    assert "does not exist" in gone["DNS SPF"].detail


def test_the_cli_shows_no_dns_as_skipped(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    config = _config(tmp_path, smtp_server.port)
    code, out, _ = cli("--config", config, "doctor")
    assert code == 0
    for name in ("DNS SPF", "DNS DMARC", "DNS DKIM"):
        assert any(
            line.startswith(f"\u2013 {name}") and line.endswith(NO_DNS) for line in out.splitlines()
        )


# ---- database -----------------------------------------------------------------------------


def test_missing_database_fails_and_is_not_created(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    config = _config(tmp_path, smtp_server.port, create_db=False)
    code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["database"].status == "fail"
    assert "no database at" in checks["database"].detail
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    ("version", "words"), [(LATEST - 2, "this release needs"), (LATEST + 1, "newer")]
)
def test_other_schema_version_fails_and_the_file_is_left_as_is(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, version: int, words: str
) -> None:
    config = _config(tmp_path, smtp_server.port)
    db = tmp_path / "var" / "test.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_migrations WHERE version > :v"), {"v": version})
        if version > LATEST:
            conn.execute(
                text("INSERT INTO schema_migrations VALUES (:v, 'future', '2030-01-01')"),
                {"v": version},
            )
    engine.dispose()
    before = db.read_bytes()
    code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["database"].status == "fail"
    assert (
        f"schema version {version}" in checks["database"].detail
        and words in checks["database"].detail
    )
    assert db.read_bytes() == before  # read-only: nothing migrated


def test_latest_schema_is_ok(cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer) -> None:
    config = _config(tmp_path, smtp_server.port)
    code, checks, _, _ = _run_json(cli, config)
    assert code == 0
    assert checks["database"].status == "ok"
    assert f"schema version {LATEST} (latest)" in checks["database"].detail


# ---- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "source", "line"),
    [
        ("digest.mjml.j2", "<mjml><mj-body>{% if %}</mj-body></mjml>", "email templates"),
        ("web/subscribe.html", "{% extends 'base.html' %}{% block x %}", "web templates"),
    ],
)
def test_a_broken_template_fails_naming_the_file(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, relative: str, source: str, line: str
) -> None:
    broken = tmp_path / "mytemplates" / relative
    broken.parent.mkdir(parents=True)
    broken.write_text(source, encoding="utf-8")
    config = _config(tmp_path, smtp_server.port, newsletter_extra='templates_dir = "mytemplates"')
    code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks[line].status == "fail"
    assert str(broken) in checks[line].detail
    other = ({"email templates", "web templates"} - {line}).pop()
    assert checks[other].status == "ok"


# ---- base_url and sources -----------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[str]:
    """/healthz says ok; /feed.xml is a feed; everything else is 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = {"/healthz": b"ok", "/feed.xml": b"<rss/>"}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_base_url_answering_healthz_is_ok(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, http_server: str
) -> None:
    config = _config(tmp_path, smtp_server.port, base_url=http_server)
    code, checks, _, _ = _run_json(cli, config)
    assert code == 0
    assert checks["base_url"] == Check("base_url", "ok", f"{http_server}/healthz: 200 ok", False)


@pytest.mark.parametrize("where", ["closed", "404"])
def test_base_url_unreachable_or_wrong_warns(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, http_server: str, where: str
) -> None:
    base = f"{http_server}/elsewhere" if where == "404" else None
    config = _config(tmp_path, smtp_server.port, base_url=base)
    code, checks, _, _ = _run_json(cli, config)
    assert code == 0  # a warning: the web app may run elsewhere
    assert checks["base_url"].status == "warn" and not checks["base_url"].required
    assert ("HTTP 404" if where == "404" else "not reachable") in checks["base_url"].detail


def test_sources_local_http_and_missing(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, http_server: str
) -> None:
    sources = "".join(
        f'\n[[sources]]\nname = "{name}"\nkind = "feed"\nurl = "{url}"\n'
        for name, url in (
            ("web", f"{http_server}/feed.xml"),
            ("gone", f"{http_server}/gone.xml"),
            ("capture", "captures/feed.xml"),
            ("missing", "file:///nonexistent/feed.xml"),
        )
    )
    (tmp_path / "captures").mkdir()
    (tmp_path / "captures" / "feed.xml").write_text("<rss/>", encoding="utf-8")
    path = write_config(tmp_path, smtp_server.port, sources=sources)
    Store.open(load_config(path).database_url()).close()
    code, checks, _, _ = _run_json(cli, path)
    assert code == 0  # sources only warn: collect goes on past one
    assert checks["source web"].status == "ok" and "HTTP 200" in checks["source web"].detail
    assert checks["source gone"].status == "warn" and "HTTP 404" in checks["source gone"].detail
    assert checks["source capture"].status == "ok"
    assert "local file, 6 bytes" in checks["source capture"].detail
    assert checks["source missing"].status == "warn"
    assert "/nonexistent/feed.xml: missing" in checks["source missing"].detail


# ---- config -------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_invalid_config_is_one_failed_line(cli: CLI, tmp_path: Path, as_json: bool) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[smtp]\nport = "twenty-five"\n', encoding="utf-8")
    code, out, err = cli("--config", path, "doctor", *(["--json"] if as_json else []))
    assert code == 1
    if as_json:
        [line] = json.loads(out)
        assert line["name"] == "config" and line["status"] == "fail" and line["required"]
        assert "smtp.port" in line["detail"]
    else:
        lines = out.strip().splitlines()
        assert lines[0].startswith("✗ config") and "smtp.port" in lines[0]
        assert lines[1:] == ["1 required check(s) failed"]
    assert "Traceback" not in err


def test_missing_signing_key_fails_the_keys_line(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, smtp_server.port)
    monkeypatch.delenv("NEWSLETTER_SECRET")
    code, checks, _, _ = _run_json(cli, config)
    assert code == 1
    assert checks["keys"].status == "fail" and "NEWSLETTER_SECRET" in checks["keys"].detail


# ---- secrets ------------------------------------------------------------------------------


def test_scrub_replaces_every_secret_longest_first() -> None:
    checks = [Check("SMTP AUTH", "fail", "said hunter2 and hunter22", True)]
    assert scrub(checks, ["hunter22", "hunter2"]) == [
        Check("SMTP AUTH", "fail", "said *** and ***", True)
    ]


def test_a_database_password_is_never_shown(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, smtp_server.port, create_db=False)
    body = path.read_text(encoding="utf-8")
    url = f"postgresql://news@127.0.0.1:{_closed_port()}/news"  # the password comes from env
    monkeypatch.setenv("NL_DOCTOR_DB_PW", "Db-pa55word")
    path.write_text(
        body.replace('"var/test.db"', f'"{url}"\ndatabase_password_env = "NL_DOCTOR_DB_PW"'),
        encoding="utf-8",
    )
    code, checks, out, err = _run_json(cli, path)
    assert code == 1
    assert checks["database"].status == "fail"
    assert "news:***@127.0.0.1" in checks["database"].detail
    assert "Db-pa55word" not in out + err


def test_a_missing_ca_file_fails_connect(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    smtp = 'security = "starttls"\nca_file = "nowhere/ca.pem"'
    code, checks, _, _ = _run_json(cli, _config(tmp_path, smtp_server.port, smtp=smtp))
    assert code == 1
    assert checks["SMTP connect"].status == "fail"
    assert checks["SMTP connect"].detail.startswith(
        "smtp.ca_file nowhere/ca.pem: FileNotFoundError"
    )
