"""Crash points for the kill tests: ``NEWSLETTER_FAILPOINT=name:n`` SIGKILLs this process the
n-th time the named point is reached. Unset (always, outside those tests), it does nothing.

Points: ``after-claim`` (row claimed, nothing sent), ``mid-data`` (half the message
written), ``after-accept`` (250 received, not yet recorded), ``after-commit`` (recorded).
"""

from __future__ import annotations

import os
import signal

_name, _, _nth = os.environ.get("NEWSLETTER_FAILPOINT", "").partition(":")
_count = 0


def due(name: str) -> bool:
    """True the n-th time ``name`` is reached (count kept per process)."""
    global _count
    if not _name or name != _name:
        return False
    _count += 1
    return _count == int(_nth or "1")


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hit(name: str) -> None:
    if due(name):
        crash()
