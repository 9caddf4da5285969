"""One daemon per config: an exclusive ``flock`` on ``<state_dir>/oaiod.lock``; a second instance exits naming the
PID that holds it. The kernel drops the lock when the process dies (even by ``kill -9``), so a stale file never
blocks.

Errors of this module::

    OaiodError
    └── DaemonError            the daemon cannot run (lock, socket)
        └── AlreadyRunning     another daemon holds this config's lock; ``.pid`` names it
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from oaiod.errors import OaiodError


class DaemonError(OaiodError):
    """The daemon cannot run."""


class AlreadyRunning(DaemonError):
    def __init__(self, lock_file: Path, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"oaiod is already running for this config ({who} holds {lock_file})")
        self.pid = pid


class InstanceLock:
    """An exclusive ``flock`` on the lock file, held for the daemon's life; the file records the holder's PID.

    The kernel drops the lock when the process dies (even by ``kill -9``), so a stale file never blocks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(self.path, holder) from None
            raise DaemonError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
