"""The run lock: exclusive, and freed by the kernel when its holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.errors import AlreadyRunningError
from newsletter.runlock import RunLock


def test_second_holder_is_refused_then_admitted(tmp_path: Path) -> None:
    path = tmp_path / "var" / "x.lock"
    with RunLock(path), pytest.raises(AlreadyRunningError, match=f"pid {os.getpid()}"):
        RunLock(path).__enter__()
    with RunLock(path):
        pass


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom newsletter.runlock import RunLock\n"
            f"with RunLock(Path({str(path)!r})):\n    print('locked', flush=True)\n"
            "    time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunningError):
            RunLock(path).__enter__()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with RunLock(path):  # no stale lock left behind
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
