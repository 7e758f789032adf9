"""The bench scripts still run (on tiny inputs): figures in notes come from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("collect.py", ["--items", "30"], "first collect"),
        ("send.py", ["--subscribers", "20", "--connections", "2"], "20 sent"),
        (
            "rank_scale.py",
            ["--subscribers", "300", "--papers", "60", "--topics", "4", "--repeat", "1"],
            "ratio",
        ),
        ("rank_quality.py", ["--fixtures", str(FIXTURES)], "ours, lexical only"),
        ("render.py", ["--subscribers", "20"], "identical HTML             20 of 20"),
        ("signup_abuse.py", ["--same-address", "5", "--one-ip", "8"], "many addresses, one IP"),
        ("tick.py", ["--subscribers", "300"], "tick with nothing due"),
    ],
)
def test_bench_script_runs(script: str, args: list[str], expect: str) -> None:
    if script == "rank_quality.py" and not FIXTURES.is_dir():
        pytest.skip(f"captured feeds not found at {FIXTURES}")
    done = subprocess.run(
        [sys.executable, str(Path(REPO) / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout
