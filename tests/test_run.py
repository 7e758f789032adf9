"""`newsletter run` as a real process: the run lock against a second send or run, a lock
left by a SIGKILLed run never blocks, and SIGTERM mid-send finishes the message in flight,
leaves the ledger consistent and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from conftest import NOW, REPO, SECRET, write_config
from newsletter.smtp_server import LocalSMTPServer, RecordingHandler

COMMAND = (sys.executable, "-m", "newsletter")
ENV = {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(REPO)}


def _setup(tmp_path: Path, port: int) -> Path:
    config = write_config(tmp_path, port, extra="[delivery]\nconnections = 1\n")
    roster = REPO / "subscribers" / "demo.toml"
    joined = (NOW - timedelta(days=2)).isoformat()  # before today's 07:00 slot
    done = subprocess.run(
        [*COMMAND, "--config", str(config), "--now", joined, "subscribers", "import", str(roster)],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return config


def _start_run(config: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*COMMAND, "--config", str(config), "--now", NOW.isoformat(), "run"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the lock is held and the scheduler starts
    assert line.startswith("Running:"), line + (proc.stderr.read() if proc.stderr else "")
    return proc


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--config", str(config), "--now", NOW.isoformat(), *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)  # polling for a state, not measuring time


def _statuses(config: Path) -> Counter[str]:
    engine = create_engine(f"sqlite:///{config.parent / 'var' / 'test.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text("select status from deliveries")).scalars().all()
    engine.dispose()
    return Counter(rows)


def test_a_second_send_or_run_exits_1_and_a_killed_run_never_blocks(tmp_path: Path) -> None:
    handler = RecordingHandler(delay=0.2)
    with LocalSMTPServer(handler) as server:
        config = _setup(tmp_path, server.port)
        proc = _start_run(config)
        try:
            for args in (("send", "--no-collect"), ("run",)):
                done = _cli(config, *args)
                assert done.returncode == 1, (args, done.stdout, done.stderr)
                assert "another send or run is using this database" in done.stderr
                assert len(done.stderr.strip().splitlines()) == 1
        finally:
            proc.kill()  # SIGKILL: no chance to clean up
            proc.wait(timeout=30)
        done = _cli(config, "send", "--no-collect")
        assert done.returncode in (0, 3), done.stderr  # the lock died with the process
    assert Counter(r.rcpt_tos[0] for r in server.received).most_common(1)[0][1] <= 2


def test_sigterm_mid_send_finishes_the_message_and_exits_0(tmp_path: Path) -> None:
    handler = RecordingHandler(delay=0.5)  # a slow server: the signal lands mid-edition
    with LocalSMTPServer(handler) as server:
        config = _setup(tmp_path, server.port)
        proc = _start_run(config)
        try:
            _wait(lambda: len(server.received) >= 1)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "Stopped; the ledger is consistent." in out
        statuses = _statuses(config)
        got = len(server.received)
        assert statuses["sending"] == 0  # nothing left mid-flight
        assert statuses["sent"] == got and 1 <= got < 5  # every accepted message recorded
        assert statuses["pending"] == 5 - got  # the rest waits
        # the next run sends the rest, nobody twice
        done = _cli(config, "send", "--no-collect")
        assert done.returncode == 0, done.stderr
    counts = Counter(r.rcpt_tos[0] for r in server.received)
    assert len(counts) == 5 and set(counts.values()) == {1}
