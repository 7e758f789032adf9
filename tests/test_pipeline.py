"""Sending an edition on real parts: faults at the SMTP server and in the data.

Every test runs ``send_edition`` against an aiosmtpd server on 127.0.0.1 and a SQLite file,
then audits what the server accepted against the ledger.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest

from conftest import NOW, send_once, setup_edition
from newsletter.config import Config
from newsletter.errors import TemplateError
from newsletter.models import RunReport, Subscriber, SubscriberStatus
from newsletter.sending import SendInterrupted
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler
from newsletter.store import Store

pytestmark = pytest.mark.usefixtures("each_backend")  # SQLite and PostgreSQL

PEOPLE = {
    "ada@example.org": ("llm",),
    "alan@example.org": ("speech",),
    "grace@example.org": ("vision",),
}


def _setup(
    tmp_path: Path,
    port: int,
    people: dict[str, tuple[str, ...]] = PEOPLE,
    newsletter_extra: str = "",
) -> tuple[Config, Store]:
    return setup_edition(tmp_path, port, people, newsletter_extra=newsletter_extra)


def _send(  # type: ignore[no-untyped-def]
    config: Config, store: Store, port: int, now=NOW, **settings
) -> RunReport:
    """One run with no in-run retries unless asked (they are tested in test_delivery)."""
    return send_once(config, store, port, now, **{"retries_per_run": 0, **settings})


def _copies(server: LocalSMTPServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.received)


def _status(store: Store, day=NOW) -> dict[str, str]:  # type: ignore[no-untyped-def]
    edition = store.edition(day.date(), day)
    by_id = {s.id: s.email for s in store.subscribers()}
    return {by_id[r["subscriber_id"]]: r["status"] for r in store.deliveries(edition)}


def test_connection_lost_after_data_is_uncertain_and_resent_once(tmp_path: Path) -> None:
    handler = RecordingHandler(drop_after_data={"alan@example.org"})
    with LocalSMTPServer(handler) as server:
        config, store = _setup(tmp_path, server.port)
        report = _send(config, store, server.port)
        assert report.uncertain == 1 and report.exit_code == 3
        assert _status(store)["alan@example.org"] == "uncertain"
        handler.drop_after_data.clear()
        again = _send(config, store, server.port)
        assert again.sent == 1 and again.uncertain == 0
        third = _send(config, store, server.port)
        assert third.sent == 0
    copies = _copies(server)
    assert copies == {"ada@example.org": 1, "grace@example.org": 1, "alan@example.org": 2}
    ids = {
        message_from_bytes(r.data)["Message-ID"]
        for r in server.received
        if r.rcpt_tos == ("alan@example.org",)
    }
    assert len(ids) == 1  # the resend carries the same Message-ID


def test_uncertain_twice_is_not_sent_a_third_time(tmp_path: Path) -> None:
    handler = RecordingHandler(drop_after_data={"alan@example.org"})
    with LocalSMTPServer(handler) as server:
        config, store = _setup(tmp_path, server.port)
        _send(config, store, server.port)
        _send(config, store, server.port)
        report = _send(config, store, server.port)
    assert report.uncertain == 1
    assert _copies(server)["alan@example.org"] == 2


def test_permanent_refusals_policy_fails_mailbox_bounces_no_retry(tmp_path: Path) -> None:
    handler = RecordingHandler(
        reject={
            "ada@example.org": "550 5.1.1 No such user",
            "alan@example.org": "550 5.7.1 Rejected by policy",
        }
    )
    with LocalSMTPServer(handler) as server:
        config, store = _setup(tmp_path, server.port)
        report = _send(config, store, server.port)
        assert (report.sent, report.bounced, report.failed) == (1, 1, 1)
        again = _send(config, store, server.port)
        assert again.sent == again.failed == again.bounced == 0
    assert _status(store) == {
        "ada@example.org": "bounced",
        "alan@example.org": "failed",
        "grace@example.org": "sent",
    }
    statuses = {s.email: s.status for s in store.subscribers()}
    assert statuses["ada@example.org"] is SubscriberStatus.BOUNCED
    assert statuses["alan@example.org"] is SubscriberStatus.ACTIVE
    edition = store.edition(NOW.date(), NOW)
    assert all(r["attempts"] == 1 for r in store.deliveries(edition))  # 5xx never retried


def test_temporary_refusal_is_retried_on_the_next_run(tmp_path: Path) -> None:
    handler = RecordingHandler(reject={"grace@example.org": "451 4.7.1 Try again later"})
    with LocalSMTPServer(handler) as server:
        config, store = _setup(tmp_path, server.port)
        report = _send(config, store, server.port)
        assert report.sent == 2 and report.pending == 1 and report.exit_code == 3
        handler.reject.clear()
        again = _send(config, store, server.port)
        assert again.sent == 1 and again.pending == 0
    assert _copies(server) == {"ada@example.org": 1, "alan@example.org": 1, "grace@example.org": 1}


def test_internationalised_address_needs_smtputf8(tmp_path: Path) -> None:
    people = {**PEOPLE, "ünï@exämple.org": ("llm",)}
    with LocalSMTPServer() as plain:
        config, store = _setup(tmp_path / "a", plain.port, people)
        report = _send(config, store, plain.port)
    assert report.sent == 3 and report.failed == 1
    assert _status(store)["ünï@exämple.org"] == "failed"
    with LocalSMTPServer(smtputf8=True) as utf8:
        config, store = _setup(tmp_path / "b", utf8.port, people)
        report = _send(config, store, utf8.port)
    assert report.sent == 4
    assert ("ünï@exämple.org",) in [r.rcpt_tos for r in utf8.received]


def test_unsubscribing_mid_edition_wins(tmp_path: Path) -> None:
    class Unsubscribing(RecordingHandler):
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            store.set_subscriber_status("grace@example.org", SubscriberStatus.UNSUBSCRIBED, NOW)
            return await super().handle_DATA(server, session, envelope)

    with LocalSMTPServer(Unsubscribing()) as server:
        config, store = _setup(tmp_path, server.port)
        _send(config, store, server.port)
    assert "grace@example.org" not in _copies(server)


def test_weekly_subscriber_is_caught_up_after_a_missed_run(tmp_path: Path) -> None:
    monday = NOW - timedelta(days=1)  # NOW is Tuesday 2026-11-24
    with LocalSMTPServer() as server:
        config, store = _setup(tmp_path, server.port, {"w@example.org": ("llm",)})
        store.upsert_subscriber(
            Subscriber(0, "w@example.org", topics=("llm",), frequency="weekly"), monday
        )
        port = server.port
    with pytest.raises(SendInterrupted):  # Monday: the server is down
        _send(config, store, port, monday)
    with LocalSMTPServer(port=port) as server:
        assert _send(config, store, port, NOW).sent == 1  # Tuesday catches up
        wednesday = NOW + timedelta(days=1)
        assert _send(config, store, port, wednesday).sent == 0  # not due again for a week
        assert _status(store, wednesday) == {}


def test_a_paused_subscriber_gets_nothing_until_resumed(tmp_path: Path) -> None:
    with LocalSMTPServer() as server:
        config, store = _setup(tmp_path, server.port, {"p@example.org": ("llm",)})
        sub = store.subscriber(email="p@example.org")
        assert sub is not None

        def pause(paused: bool) -> None:
            assert store.update_preferences(
                sub.id,
                topics=sub.topics,
                keywords=(),
                frequency="daily",
                timezone="UTC",
                paused=paused,
                now=NOW,
            )

        pause(True)
        assert _send(config, store, server.port).sent == 0
        pause(False)
        assert _send(config, store, server.port, NOW + timedelta(days=1)).sent == 1
    assert _copies(server) == Counter({"p@example.org": 1})


def test_template_error_stops_the_run_and_keeps_rows_pending(tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "digest.txt.j2").write_text("{{ no_such_value }}")
    with LocalSMTPServer() as server:
        config, store = _setup(
            tmp_path, server.port, newsletter_extra=f'templates_dir = "{templates}"'
        )
        with pytest.raises(TemplateError):
            _send(config, store, server.port)
    assert set(_status(store).values()) == {"pending"}
    assert server.received == []
