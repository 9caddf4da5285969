"""The daemon's logs: stderr, a rotating file (0600) in the per-instance log folder, and the buffer ``oaiod ctl
log`` reads."""

from __future__ import annotations

import collections
import io
import logging
import logging.handlers
import os
import threading
from typing import cast

from oaiod.daemon.config import Config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LINES_KEPT = 2000  #: lines ``oaiod ctl log`` can show


class LogBuffer(logging.Handler):
    """Keeps the last lines for ``ctl log`` and wakes ``ctl log -f`` followers."""

    def __init__(self, size: int = LOG_LINES_KEPT) -> None:
        super().__init__()
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=size)
        self.counter = 0
        self.cond = threading.Condition()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self.cond:
            self.counter += 1
            self.lines.append((self.counter, line))
            self.cond.notify_all()

    def since(self, counter: int) -> list[tuple[int, str]]:
        with self.cond:
            return [item for item in self.lines if item[0] > counter]


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose files are mode 0600 whatever the umask (the daemon keeps the user's umask for the
    files it syncs): log lines name files and folders. A file made 0644 before is chmod'ed when opened."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return cast(io.TextIOWrapper, open(fd, self.mode, encoding=self.encoding, errors=self.errors))  # text mode
        except BaseException:
            os.close(fd)
            raise


class CtlHints(logging.Filter):
    """Hints in log lines (the engine's ``run `oaiod ctl confirm-delete …``` and the like) become lines to paste for
    this daemon: the engine knows no config, the daemon does (``oaiod --config FILE ctl …``)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefix != "oaiod ctl":
            message = record.getMessage()
            if "`oaiod ctl " in message:
                record.msg, record.args = message.replace("`oaiod ctl ", f"`{self.prefix} "), None
        return True


def setup_logging(config: Config, buffer: LogBuffer) -> list[logging.Handler]:
    """stderr + rotating file (0600) in the per-instance log dir (0700) + the ctl buffer, each turning ctl hints
    into lines for this config (:class:`CtlHints`); returns the handlers added."""
    config.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    formatter = logging.Formatter(LOG_FORMAT)
    stderr = logging.StreamHandler()
    rotating = PrivateRotatingFileHandler(
        config.log_file, maxBytes=config.log.max_bytes, backupCount=config.log.backups, encoding="utf-8"
    )
    handlers: list[logging.Handler] = [stderr, rotating, buffer]
    root = logging.getLogger()
    hints = CtlHints(config.ctl())
    for handler in handlers:
        handler.addFilter(hints)
        if handler is not buffer:
            handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(config.log.level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "job executed" lines every few seconds
    logging.getLogger("oaiod.hub.access").setLevel(logging.WARNING)  # the embedded hub: a line per own request
    for library in ("alembic", "uvicorn.error"):  # set-up lines at each start ("setup plugin …", "Started server …")
        logging.getLogger(library).setLevel(logging.WARNING)
    return handlers
