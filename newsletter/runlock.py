"""One send at a time: an exclusive ``flock`` on a lock file next to the database.

The kernel drops the lock when the holder dies (even by SIGKILL), so there is never a stale
lock to clean up. Holding it is what makes recovering interrupted deliveries safe: no other
run can be mid-transaction on a row marked ``sending``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from newsletter.errors import AlreadyRunningError, StoreError


class RunLock:
    """Non-blocking exclusive lock; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(self.path)
            raise AlreadyRunningError(
                f"another send or run is using this database{f' (pid {holder})' if holder else ''}"
                "; nothing sent",
                hint=f"it holds {self.path}; wait for it to finish",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()[:20]
    except OSError:
        return ""
