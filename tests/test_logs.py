"""Logs: JSON lines for journald, and never a secret, tested with a real password against a
real AUTH server (accepted and refused), at debug level where libraries log the protocol."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from smtp_auth import AuthCheck

from conftest import CLI, NOW, REPO, write_config
from newsletter.logs import JsonFormatter, Redactor, redact, register_secret
from newsletter.smtp_server import LocalSMTPServer

USER = "digest-mailer"
PASSWORD = "Corr3ct-horse-battery-for-logs"


def _forms(secret: str) -> list[str]:
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{secret}".encode()).decode(),
    ]


def test_a_registered_secret_is_masked_in_message_args_and_traceback() -> None:
    register_secret("hunter2-long-secret", USER)
    record = logging.LogRecord(
        "x", logging.ERROR, "f", 1, "login with %s", ("hunter2-long-secret",), None
    )
    try:
        raise RuntimeError("refused hunter2-long-secret")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert Redactor().filter(record)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "login with ***" and entry["level"] == "error"
    assert "hunter2" not in line and "***" in entry["error"]
    assert redact(base64.b64encode(b"hunter2-long-secret").decode()) == "***"


@pytest.mark.parametrize("password", [PASSWORD, "Wr0ng-guess-for-the-logs"])
def test_no_log_line_holds_the_smtp_password(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("LOG_TEST_SMTP_PASSWORD", password)
    with LocalSMTPServer(authenticator=AuthCheck(USER, PASSWORD), auth_require_tls=False) as server:
        config = write_config(tmp_path, server.port)
        text = config.read_text().replace(
            "timeout = 5",
            f'timeout = 5\nusername = "{USER}"\npassword_env = "LOG_TEST_SMTP_PASSWORD"',
        )
        config.write_text(text)
        roster = REPO / "subscribers" / "demo.toml"
        assert cli("--config", config, "subscribers", "import", roster)[0] == 0
        code, out, err = cli(
            "--config", config, "-vv", "--log-format", "json", "--now", NOW.isoformat(), "send"
        )
        received = len(server.received)
    if password == PASSWORD:
        assert code == 0 and received == 5
    else:
        assert code != 0 and received == 0
    logs = [line for line in err.splitlines() if line.startswith("{")]
    assert logs, "expected debug logs"
    for line in logs:
        entry = json.loads(line)  # every log line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry)
    for form in _forms(password):
        assert form not in out and form not in err
