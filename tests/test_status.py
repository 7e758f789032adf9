"""`newsletter status`: what a person (table) or a monitor (--json) needs to see."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from conftest import CLI, NOW, REPO, write_config
from newsletter.smtp_server import LocalSMTPServer


def test_status_after_a_send_with_a_bounce_and_an_unsubscribe(
    cli: CLI, tmp_path: Path, smtp_server: LocalSMTPServer
) -> None:
    smtp_server.handler.reject["ada@example.org"] = "550 5.1.1 no such user"
    smtp_server.handler.temporary["alan@example.org"] = 99  # 451 every time: a retry waits
    config = write_config(tmp_path, smtp_server.port, extra="[delivery]\nretries_per_run = 0\n")
    assert (
        cli("--config", config, "subscribers", "import", REPO / "subscribers" / "demo.toml")[0] == 0
    )
    assert cli("--config", config, "subscribers", "remove", "emmy@example.org")[0] == 0
    assert cli("--config", config, "--now", NOW.isoformat(), "send")[0] == 3
    code, out, _ = cli("--config", config, "--now", NOW.isoformat(), "status", "--json")
    assert code == 0
    status = json.loads(out)
    sources = {s["source"]: s for s in status["sources"]}
    assert sources["arxiv-cs"]["status"] == "new items" and sources["arxiv-cs"]["found"] > 0
    assert sources["hf-daily"]["last_collect"] == NOW.isoformat()
    [edition] = status["editions"]
    assert edition["date"] == NOW.date().isoformat()
    assert status["deliveries"] == edition["counts"]
    assert status["deliveries"].get("bounced") == 1 and status["deliveries"].get("pending") == 1
    assert status["retries_waiting"] == 1
    assert status["subscribers"]["bounced"] == 1 and status["subscribers"]["unsubscribed"] == 1
    assert status["suppressed"] == 2
    nxt = status["next"]
    assert nxt["edition"] == (NOW + timedelta(hours=19)).isoformat()  # tomorrow 07:00 UTC
    assert nxt["messages_in_24h"] == 3  # alan, grace and claude: the active ones
    assert nxt["owed_now"] == 0  # today's edition is planned for all of them
    assert nxt["send_check_minutes"] == 5
    assert nxt["collects"][0] == (NOW + timedelta(hours=6)).isoformat()  # 18:00 UTC
    code, out, _ = cli("--config", config, "--now", NOW.isoformat(), "status")
    assert code == 0 and "retries waiting" in out and "Sources" in out
