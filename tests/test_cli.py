"""The CLI end to end, in-process, on real parts: SQLite files, aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import CLI, NOW, write_config
from newsletter.smtp_server import LocalSMTPServer


def _setup(cli: CLI, tmp_path: Path, port: int, roster: Path) -> Path:
    config = write_config(tmp_path, port)
    code, _, err = cli("--config", config, "subscribers", "import", roster)
    assert code == 0, err
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_writes_one_message_per_subscriber(
    cli: CLI, tmp_path: Path, demo_roster: Path
) -> None:
    out = tmp_path / "demo"
    code, stdout, _ = cli("demo", "--out", out)
    assert code == 0
    roster = demo_roster.read_text()
    expected = roster.count("[[subscribers]]")
    assert len(list(out.glob("*.eml"))) == expected
    assert len(list(out.glob("*.html"))) == expected + 1  # plus index.html
    index = (out / "index.html").read_text()
    for eml in out.glob("*.eml"):
        assert f'href="{eml.stem}.html"' in index
    assert "sent" in stdout and "accepted 5 message(s)" in stdout


def test_send_delivers_once_per_edition(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, demo_roster: Path
) -> None:
    config = _setup(cli, tmp_path, smtp_server.port, demo_roster)
    code, out, err = cli("--config", config, "--now", NOW.isoformat(), "send", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["sent"] == 5
    assert {k: report[k] for k in ("failed", "bounced", "uncertain", "pending")} == dict.fromkeys(
        ("failed", "bounced", "uncertain", "pending"), 0
    )
    assert report["seconds"] > 0 and report["msgs_per_second"] > 0
    assert len(smtp_server.received) == 5
    for r in smtp_server.received:
        assert len(r.rcpt_tos) == 1
        msg = message_from_bytes(r.data, policy=policy.default)
        assert msg["To"].addresses[0].addr_spec == r.rcpt_tos[0]

    code, out, _ = cli(
        "--config", config, "--now", (NOW + timedelta(hours=2)).isoformat(), "send", "--json"
    )
    assert code == 0
    again = json.loads(out.strip().splitlines()[-1])
    assert again["sent"] == 0 and again["already_done"] == 5
    assert len(smtp_server.received) == 5


def _paper_ids(data: bytes) -> set[str]:
    msg = message_from_bytes(data, policy=policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return set(re.findall(r"\] https://arxiv.org/abs/(\S+)", text))  # the numbered links


def test_paper_sent_yesterday_is_not_sent_today(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, demo_roster: Path
) -> None:
    config = _setup(cli, tmp_path, smtp_server.port, demo_roster)
    assert cli("--config", config, "--now", NOW.isoformat(), "send")[0] == 0
    day1 = {r.rcpt_tos[0]: _paper_ids(r.data) for r in smtp_server.received}
    assert all(day1.values())
    code, out, _ = cli(
        "--config", config, "--now", (NOW + timedelta(days=1)).isoformat(), "send", "--json"
    )
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    day2 = {r.rcpt_tos[0]: _paper_ids(r.data) for r in smtp_server.received[len(day1) :]}
    assert report["sent"] == len(day2)
    # the same feeds again: whoever gets a second email gets only papers not sent before,
    # and those who were sent everything relevant get nothing
    for address, ids in day2.items():
        assert ids and not ids & day1[address], address
    assert report["skipped_empty"] == 5 - len(day2)
    assert report["skipped_empty"] >= 1


def test_dry_run_touches_neither_smtp_nor_database(
    cli: CLI, tmp_path: Path, demo_roster: Path
) -> None:
    port = _free_port()
    config = _setup(cli, tmp_path, port, demo_roster)
    db = tmp_path / "var" / "test.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with LocalSMTPServer(port=port) as server:
        code, _out, err = cli(
            "--config",
            config,
            "--now",
            NOW.isoformat(),
            "send",
            "--dry-run",
            "--out",
            tmp_path / "outbox",
        )
        assert code == 0, err
        assert server.received == []
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    emls = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(emls) == 5
    for eml in emls:
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
        unsub = msg["List-Unsubscribe"]
        assert "<https://digest.test.example/unsubscribe/" in unsub
        assert "<mailto:unsubscribe@test.example?" in unsub
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_server_down_leaves_everyone_pending_then_rerun_delivers(
    cli: CLI, tmp_path: Path, demo_roster: Path
) -> None:
    port = _free_port()
    config = _setup(cli, tmp_path, port, demo_roster)
    code, out, err = cli("--config", config, "--now", NOW.isoformat(), "send", "--json")
    assert code == 3
    report = json.loads(out.strip().splitlines()[-1])
    assert report["sent"] == 0 and report["pending"] == 5
    assert err.count("cannot reach the SMTP server") == 1
    with LocalSMTPServer(port=port) as server:
        code, out, _ = cli(
            "--config", config, "--now", NOW.isoformat(), "send", "--json", "--no-collect"
        )
        assert code == 0
        assert sorted(r.rcpt_tos[0] for r in server.received) == sorted(
            [
                "ada@example.org",
                "alan@example.org",
                "grace@example.org",
                "claude@example.org",
                "emmy@example.org",
            ]
        )


def test_rank_json_lines(cli: CLI, tmp_path: Path, demo_roster: Path) -> None:
    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    assert cli("--config", config, "--now", NOW.isoformat(), "collect")[0] == 0
    code, out, _ = cli("--config", config, "--now", NOW.isoformat(), "rank", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert {d["subscriber"] for d in lines} == {
        "ada@example.org",
        "alan@example.org",
        "grace@example.org",
        "claude@example.org",
        "emmy@example.org",
    }
    for d in lines:
        for item in d["items"]:
            assert set(item) == {"id", "title", "url", "score", "reasons"}
            assert item["reasons"]
    code, out, _ = cli(
        "--config",
        config,
        "--now",
        NOW.isoformat(),
        "rank",
        "--json",
        "--subscriber",
        "ada@example.org",
    )
    assert code == 0
    assert [json.loads(x)["subscriber"] for x in out.strip().splitlines()] == ["ada@example.org"]


def test_collect_json_and_papers(cli: CLI, tmp_path: Path, demo_roster: Path) -> None:
    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    code, out, _ = cli("--config", config, "collect", "--json")
    assert code == 0
    rows = {r["source"]: r for r in map(json.loads, out.strip().splitlines())}
    # the sample's one `replace` is of a paper never stored: an old paper revised, not news
    assert rows["arxiv-cs"]["new"] == 9 and rows["arxiv-cs"]["skipped"] == 1
    assert rows["hf-daily"]["new"] == 1
    code, out, _ = cli("--config", config, "collect", "--json")
    rows = {r["source"]: r for r in map(json.loads, out.strip().splitlines())}
    assert rows["arxiv-cs"]["new"] == 0 and rows["arxiv-cs"]["updated"] == 0
    code, out, _ = cli("--config", config, "papers", "--json")
    papers = {p["id"]: p for p in map(json.loads, out.strip().splitlines())}
    assert papers["2611.10001"]["sources"] == ["arxiv-cs", "hf-daily"]
    assert papers["2611.10001"]["signals"]["upvotes"] == 142


def test_preview_writes_gallery(cli: CLI, tmp_path: Path, demo_roster: Path) -> None:
    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    cli("--config", config, "--now", NOW.isoformat(), "collect")
    args = (
        "--config",
        config,
        "--now",
        NOW.isoformat(),
        "preview",
        "--out",
        tmp_path / "pv",
        "--subscriber",
        "grace@example.org",
    )
    code, _, err = cli(*args)
    assert code == 0, err
    (tmp_path / "pv" / "notes.txt").write_text("mine")
    code, _, err = cli(*args)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pv").iterdir()) == [
        ".gallery-files",
        "grace@example.org.eml",
        "grace@example.org.html",
        "grace@example.org.txt",
        "index.html",
        "notes.txt",  # a file the gallery did not write is never removed
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[newsletter]\nnmae = 'x'\n", "unknown key newsletter.nmae"),
        ("[smtp]\nport = 'twenty-five'\n", "smtp.port = 'twenty-five'"),
        ("[[sources]]\nname = 'a'\nkind = 'rss'\nurl = 'x'\n", "sources[0].kind"),
        ("[digest]\nmax_papers = 0\n", "digest.max_papers"),
        ("[newsletter\n", "invalid TOML"),
    ],
)
def test_bad_config_is_one_line_exit_1(cli: CLI, tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    code, out, err = cli("--config", path, "subscribers", "list")
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err + out


def test_missing_config_file(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli("--config", tmp_path / "nope.toml", "collect")
    assert code == 1
    assert "config file not found" in err and len(err.strip().splitlines()) == 1


def test_usage_error_exits_2(cli: CLI) -> None:
    assert cli("send", "--no-such-flag")[0] == 2


def test_import_reports_bad_rows_and_is_idempotent(cli: CLI, tmp_path: Path) -> None:
    config = write_config(tmp_path, _free_port())
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "email,name,topics,keywords\n"
        "a@example.org,A,llm;speech,\n"
        "not-an-address,B,,\n"
        "c@example.org,C,nosuchtopic,\n"
        "d@example.org,D,,graph;transformer\n"
    )
    code, out, err = cli("--config", config, "subscribers", "import", roster)
    assert code == 0
    assert "roster.csv:3" in err and "roster.csv:4" in err
    assert "added 2" in out and "invalid 2" in out
    code, out, _ = cli("--config", config, "subscribers", "import", roster)
    assert "added 0" in out and "unchanged 2" in out
    cli("--config", config, "subscribers", "remove", "a@example.org")
    code, out, _ = cli("--config", config, "subscribers", "import", roster)
    assert "skipped (suppressed) 1" in out
    code, out, _ = cli("--config", config, "subscribers", "list", "--json")
    status = {s["email"]: s["status"] for s in map(json.loads, out.strip().splitlines())}
    assert status == {"a@example.org": "unsubscribed", "d@example.org": "active"}


def test_subscribers_add_pending_and_confirmed(cli: CLI, tmp_path: Path) -> None:
    config = write_config(tmp_path, _free_port())
    assert cli("--config", config, "subscribers", "add", "P@Example.org", "--topic", "llm")[0] == 0
    assert (
        cli(
            "--config",
            config,
            "subscribers",
            "add",
            "q@example.org",
            "--confirmed",
            "--keyword",
            "speech",
        )[0]
        == 0
    )
    code, _, err = cli("--config", config, "subscribers", "add", "r@example.org", "--topic", "zzz")
    assert code == 1 and "unknown topic zzz" in err
    code, out, _ = cli("--config", config, "subscribers", "list", "--json")
    rows = {s["email"]: s for s in map(json.loads, out.strip().splitlines())}
    assert rows["p@example.org"]["status"] == "pending"
    assert rows["q@example.org"]["status"] == "active"
    assert rows["q@example.org"]["keywords"] == ["speech"]


def test_config_from_environment_and_verbose_log(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, _free_port())
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config))
    code, _, err = cli("--verbose", "collect")
    assert code == 0
    assert "source arxiv-cs: new items, 10 parsed, 9 new, 0 updated" in err


def test_module_entry_point_runs() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    for command in ("demo", "collect", "rank", "preview", "send", "papers", "subscribers"):
        assert command in done.stdout


def test_second_send_while_one_runs_exits_1_and_sends_nothing(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, demo_roster: Path
) -> None:
    from newsletter.config import load_config
    from newsletter.runlock import RunLock

    config = _setup(cli, tmp_path, smtp_server.port, demo_roster)
    with RunLock(load_config(config).lock_path()):
        code, _, err = cli("--config", config, "--now", NOW.isoformat(), "send")
    assert code == 1
    assert "another send or run is using this database" in err
    assert len(err.strip().splitlines()) == 1
    assert smtp_server.received == []
    # the lock is free again: the next run sends
    assert cli("--config", config, "--now", NOW.isoformat(), "send")[0] == 0
    assert len(smtp_server.received) == 5


def test_feed_text_is_not_terminal_markup(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.cli.context import out as console

    monkeypatch.setattr(console, "width", 250)
    feed = tmp_path / "odd.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
        "<item><title>Brackets [/bold] and [link=https://evil.example]click[/link]</title>"
        "<link>https://example.org/p/1</link></item></channel></rss>"
    )
    config = write_config(
        tmp_path,
        _free_port(),
        sources=f'[[sources]]\nname = "odd"\nkind = "feed"\nurl = "{feed}"\n',
    )
    assert cli("--config", config, "collect")[0] == 0
    code, out, err = cli("--config", config, "papers")
    assert code == 0, err
    assert "Brackets [/bold] and [link=https://evil.example]click[/link]" in out


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ("foo://bar", "cannot use database"),
        ("/proc/no/such/dir/x.db", "cannot create the database folder"),
    ],
)
def test_bad_database_is_one_line(cli: CLI, tmp_path: Path, database: str, message: str) -> None:
    config = write_config(tmp_path, _free_port())
    text = config.read_text().replace('database = "var/test.db"', f'database = "{database}"')
    config.write_text(text)
    code, _out, err = cli("--config", config, "subscribers", "list")
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_source_url_scheme_is_checked_in_the_config(cli: CLI, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        _free_port(),
        sources='[[sources]]\nname = "x"\nkind = "feed"\nurl = "ftp://example.org/feed.xml"\n',
    )
    code, _, err = cli("--config", config, "collect")
    assert code == 1 and "sources[0].url" in err


def test_rank_explain_names_the_model_and_parts(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_roster: Path
) -> None:
    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    text = config.read_text().replace("[digest]", '[ranking]\nsemantic = "off"\n\n[digest]')
    config.write_text(text)
    cli("--config", config, "--now", NOW.isoformat(), "collect")
    code, out, _ = cli(
        "--config",
        config,
        "--now",
        NOW.isoformat(),
        "rank",
        "--explain",
        "--json",
        "--subscriber",
        "alan@example.org",
    )
    assert code == 0
    [row] = [json.loads(x) for x in out.strip().splitlines()]
    assert row["model"].startswith("TF-IDF")
    assert row["items"] and set(row["items"][0]["parts"]) == {"relevance", "trending", "recency"}
    assert row["items"][0]["topic"] in ("speech", "llm")


def test_subscriber_authors_and_exclusions_round_trip(cli: CLI, tmp_path: Path) -> None:
    config = write_config(tmp_path, _free_port())
    assert (
        cli(
            "--config",
            config,
            "subscribers",
            "add",
            "x@example.org",
            "--confirmed",
            "--author",
            "Ada Lovelace",
            "--exclude",
            "survey",
        )[0]
        == 0
    )
    _, out, _ = cli("--config", config, "subscribers", "list", "--json")
    [row] = [json.loads(x) for x in out.strip().splitlines()]
    assert row["authors"] == ["Ada Lovelace"] and row["exclude"] == ["survey"]


def test_gallery_is_served_on_loopback(tmp_path: Path) -> None:
    import threading

    import httpx

    from newsletter.gallery import serve_folder

    (tmp_path / "index.html").write_text("<h1>gallery</h1>")
    server, url = serve_folder(tmp_path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url, timeout=5, trust_env=False).text == "<h1>gallery</h1>"
        rebound = httpx.get(url, timeout=5, trust_env=False, headers={"Host": "evil.example"})
        assert rebound.status_code == 403
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_distinct_addresses_never_share_a_preview_file(tmp_path: Path) -> None:
    from email.message import EmailMessage

    from newsletter.gallery import write_gallery

    def message(to: str) -> bytes:
        msg = EmailMessage()
        msg["To"], msg["Subject"] = "x@example.org", f"for {to}"
        msg.set_content(f"text for {to}")
        msg.add_alternative(f"<p>html for {to}</p>", subtype="html")
        return msg.as_bytes()

    addresses = ["a/b@example.org", "a_b@example.org", "a#b@example.org"]
    write_gallery(tmp_path, [(a, message(a)) for a in addresses], "t")
    texts = sorted(p.read_text() for p in tmp_path.glob("*.txt"))
    assert texts == sorted(f"text for {a}\n" for a in addresses)
    assert (tmp_path / "a_b@example.org.txt").exists()  # a safe address keeps its own name


def test_show_export_and_forget(cli: CLI, tmp_path: Path, demo_roster: Path) -> None:
    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    code, out, _ = cli("--config", config, "subscribers", "show", "grace@example.org", "--json")
    assert code == 0 and json.loads(out)["keywords"] == ["benchmark"]
    code, out, _ = cli("--config", config, "subscribers", "export")
    assert code == 0 and out.splitlines()[0].startswith("email,name,status,topics")
    exported = tmp_path / "export.csv"
    exported.write_text(out)
    code, _, _ = cli("--config", config, "subscribers", "forget", "grace@example.org")
    assert code == 0
    code, out, _ = cli("--config", config, "subscribers", "list", "--json")
    assert "grace@example.org" not in out
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "test.db") as conn:  # fold the WAL into the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("test.db*"))
    assert b"grace@example.org" not in db and b"Grace Hopper" not in db
    # a forgotten address never comes back, not even from its own export
    code, out, _ = cli("--config", config, "subscribers", "import", exported)
    assert "skipped (suppressed) 1" in out
    code, _, err = cli("--config", config, "subscribers", "add", "grace@example.org")
    assert code == 1 and "suppressed" in err


def test_unsubscribe_from_mail(
    cli: CLI,
    tmp_path: Path,
    smtp_server: LocalSMTPServer,
    demo_roster: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    config = _setup(cli, tmp_path, smtp_server.port, demo_roster)
    assert cli("--config", config, "--now", NOW.isoformat(), "send")[0] == 0
    raw = next(r.data for r in smtp_server.received if r.rcpt_tos == ("alan@example.org",))
    header = str(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"])
    subject = re.search(r"subject=([^>]+)>", header).group(1)  # type: ignore[union-attr]
    from urllib.parse import unquote

    mail = (
        f"From: alan@example.org\r\nTo: unsubscribe@test.example\r\n"
        f"Subject: {unquote(subject)}\r\n\r\n"
    ).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(mail)))
    code, out, err = cli("--config", config, "unsubscribe", "--from-mail", "-")
    assert code == 0, err
    _, out, _ = cli("--config", config, "subscribers", "show", "alan@example.org", "--json")
    assert json.loads(out)["status"] == "unsubscribed"
    forged = tmp_path / "forged.eml"
    forged.write_bytes(b"From: ada@example.org\r\nSubject: unsubscribe\r\n\r\nplease\r\n")
    code, _, err = cli("--config", config, "unsubscribe", "--from-mail", forged)
    assert code == 1 and "no unsubscribe token" in err


def test_send_ends_with_the_totals_table(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer, demo_roster: Path
) -> None:
    smtp_server.handler.reject["ada@example.org"] = "550 5.1.1 no such user"
    config = _setup(cli, tmp_path, smtp_server.port, demo_roster)
    code, out, _ = cli("--config", config, "--now", NOW.isoformat(), "send")
    assert code == 0  # a bounce is an outcome, not something left to do
    totals = out[out.index("Totals") :]
    for name, value in (("sent", "4"), ("failed", "0"), ("bounced", "1"), ("pending", "0")):
        assert re.search(rf"│ {name}\s*│\s*{value} │", totals), totals
    assert re.search(r"│ msgs/s\s*│\s*[\d.]+ │", totals) and "seconds" in totals
    assert "ada@example.org" in out and "bounced" in out


def test_a_pause_survives_export_and_import(cli: CLI, tmp_path: Path, demo_roster: Path) -> None:
    from newsletter.config import load_config
    from newsletter.store import Store

    config = _setup(cli, tmp_path, _free_port(), demo_roster)
    store = Store.open(load_config(Path(config)).database_url())
    try:
        grace = store.subscriber(email="grace@example.org")
        assert grace is not None
        assert store.update_preferences(
            grace.id,
            topics=grace.topics,
            keywords=grace.keywords,
            frequency="weekly",
            timezone="Europe/Berlin",
            paused=True,
            now=NOW,
        )
    finally:
        store.close()
    _, listed, _ = cli("--config", config, "subscribers", "list", "--json")
    paused = [json.loads(x)["email"] for x in listed.splitlines() if json.loads(x)["paused"]]
    assert paused == ["grace@example.org"]
    code, out, _ = cli("--config", config, "subscribers", "export")
    assert code == 0
    exported = tmp_path / "export.csv"
    exported.write_text(out)
    other = tmp_path / "other"
    other.mkdir()
    config2 = write_config(other, _free_port())
    code, out, err = cli("--config", config2, "subscribers", "import", exported)
    assert code == 0, err
    _, shown, _ = cli("--config", config2, "subscribers", "show", "grace@example.org", "--json")
    record = json.loads(shown)
    assert record["paused"] is True and record["timezone"] == "Europe/Berlin"
    _, shown, _ = cli("--config", config2, "subscribers", "show", "ada@example.org", "--json")
    assert json.loads(shown)["paused"] is False
