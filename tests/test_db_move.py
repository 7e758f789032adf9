"""Moving an installation: `newsletter db export` from SQLite, `db import` into a new
PostgreSQL database (or SQLite), every row kept, and the next send the same on both."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import CLI, NOW, REPO, Databases, write_config
from newsletter.smtp_server import LocalSMTPServer

pytestmark = pytest.mark.usefixtures("each_backend")  # the target: SQLite, then PostgreSQL


def _use_port(config: Path, port: int) -> None:
    body = config.read_text()
    old = body.split("\nport = ")[1].split()[0]
    config.write_text(body.replace(f"\nport = {old}", f"\nport = {port}", 1))


def _sqlite_source(tmp_path: Path) -> Path:
    """The installation to move: always a SQLite file, whatever the target."""
    from conftest import DATABASES

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    token = DATABASES.set(None)
    try:
        return write_config(tmp_path / "old", 25)
    finally:
        DATABASES.reset(token)


def _sent(server: LocalSMTPServer) -> dict[str, str]:
    return {
        r.rcpt_tos[0]: str(message_from_bytes(r.data, policy=policy.default)["Subject"])
        for r in server.received
    }


def test_export_import_keeps_everything_and_the_next_send_matches(
    cli: CLI, tmp_path: Path, each_backend: Databases
) -> None:
    from conftest import DATABASES

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    token = DATABASES.set(None)  # the source is always a SQLite file
    try:
        source = write_config(tmp_path / "old", 25)
    finally:
        DATABASES.reset(token)
    roster = REPO / "subscribers" / "demo.toml"
    assert cli("--config", source, "subscribers", "import", roster)[0] == 0
    with LocalSMTPServer() as server:
        server.handler.reject["ada@example.org"] = "550 5.1.1 no such user"
        _use_port(source, server.port)
        assert cli("--config", source, "--now", NOW.isoformat(), "send")[0] == 0
    assert cli("--config", source, "subscribers", "remove", "alan@example.org")[0] == 0
    assert cli("--config", source, "subscribers", "forget", "emmy@example.org")[0] == 0
    export = tmp_path / "export.jsonl"
    code, out, err = cli("--config", source, "db", "export", export)
    assert code == 0, err
    header = json.loads(export.read_text().splitlines()[0])
    assert (
        header["counts"]["suppressions"] == 1 and header["counts"]["deliveries"] == 4
    )  # emmy's went with her

    target = write_config(tmp_path / "new", 25)  # each_backend decides the database
    code, out, err = cli("--config", target, "db", "import", export)
    assert code == 0, err
    assert "Imported" in out and "sent_papers" in out
    # importing again is refused: the target is no longer empty, and nothing changes
    code, _, err = cli("--config", target, "db", "import", export)
    assert code == 1 and "not empty" in err

    for path in (source, target):
        _, shown, _ = cli("--config", path, "subscribers", "list", "--json")
        people = {json.loads(x)["email"]: json.loads(x)["status"] for x in shown.splitlines()}
        assert people == {
            "ada@example.org": "bounced",
            "alan@example.org": "unsubscribed",
            "grace@example.org": "active",
            "claude@example.org": "active",
        }
        # the hashed suppression came along: a forgotten address cannot come back
        code, _, err = cli("--config", path, "subscribers", "add", "emmy@example.org")
        assert code == 1 and "suppressed" in err

    tomorrow = (NOW + timedelta(days=1)).isoformat()
    results = []
    for path in (source, target):
        with LocalSMTPServer() as server:
            _use_port(path, server.port)
            code, _, err = cli("--config", path, "--now", tomorrow, "send", "--no-collect")
            assert code == 0, err
            results.append(_sent(server))
    assert results[0] == results[1] and set(results[0]) <= {
        "grace@example.org",
        "claude@example.org",
    }
    # the imported ledger knows what was sent yesterday: no paper twice on either side
    assert Counter(results[0]) == Counter(results[1])


def test_an_export_of_another_kind_is_refused(cli: CLI, tmp_path: Path) -> None:
    bogus = tmp_path / "x.jsonl"
    bogus.write_text('{"hello": 1}\n')
    target = write_config(tmp_path, 25)
    code, _, err = cli("--config", target, "db", "import", bogus)
    assert code == 1 and "not a newsletter export" in err


def test_a_moved_installation_never_reuses_a_subscriber_id(cli: CLI, tmp_path: Path) -> None:
    """Ids are in the links of emails already sent: after a forget and a move, a new
    subscriber must not get the forgotten one's id (its old links would act on them)."""
    source = _sqlite_source(tmp_path)
    for who in ("a", "b", "c"):
        assert cli("--config", source, "subscribers", "add", f"{who}@example.org")[0] == 0
    assert cli("--config", source, "subscribers", "forget", "c@example.org")[0] == 0
    export = tmp_path / "export.jsonl"
    assert cli("--config", source, "db", "export", export)[0] == 0
    target = write_config(tmp_path / "new", 25)
    assert cli("--config", target, "db", "import", export)[0] == 0
    assert cli("--config", target, "subscribers", "add", "d@example.org")[0] == 0
    _, shown, _ = cli("--config", target, "subscribers", "list", "--json")
    assert [json.loads(x)["email"] for x in shown.splitlines()] == [
        "a@example.org",
        "b@example.org",
        "d@example.org",
    ]
    from newsletter.config import load_config
    from newsletter.store import Store

    store = Store.open(load_config(target).database_url())
    try:
        d = store.subscriber(email="d@example.org")
        assert d is not None and d.id == 4  # not 3, which was c's
    finally:
        store.close()


def test_a_truncated_export_imports_nothing(cli: CLI, tmp_path: Path) -> None:
    source = _sqlite_source(tmp_path)
    for who in ("a", "b", "c"):
        assert cli("--config", source, "subscribers", "add", f"{who}@example.org")[0] == 0
    export = tmp_path / "export.jsonl"
    assert cli("--config", source, "db", "export", export)[0] == 0
    lines = export.read_text().splitlines()
    export.write_text("\n".join(lines[:-1]) + "\n")  # the last row is lost
    target = write_config(tmp_path / "new", 25)
    code, _, err = cli("--config", target, "db", "import", export)
    assert code == 1 and "does not match" in err
    _, shown, _ = cli("--config", target, "subscribers", "list", "--json")
    assert shown.strip() == ""  # all or nothing
