"""``python tests/daemon/daemon_fake_run.py CONFIG``: a real daemon process (lock, signals, ctl socket, watcher,
scheduler, sd_notify) around the :class:`FakeEngine` — the daemon shell tested without a server."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_fake_engine import fake_factory

from oaiod.daemon.process import run_daemon

if __name__ == "__main__":
    sys.exit(run_daemon(Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None, fake_factory))
