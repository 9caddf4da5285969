"""Starting daemon processes in tests, and waiting for them without asserting timings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oaiod.daemon.config import load_config
from oaiod.daemon.ctl.protocol import CtlClient, CtlError

HERE = Path(__file__).resolve().parent
FAKE_RUN = HERE / "daemon_fake_run.py"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class DaemonProcess:
    """A daemon subprocess (the fake engine by default, or the real CLI) and a ctl client for its config."""

    def __init__(self, config_file: Path, *, real: bool = False, env: dict[str, str] | None = None) -> None:
        self.config_file = config_file
        self.config = load_config(config_file)
        self.client = CtlClient(self.config.paths.socket, timeout=60)
        if real:
            cmd = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config_file), "run"]
        else:
            cmd = [sys.executable, str(FAKE_RUN), str(config_file)]
        # stderr to a file, not a pipe: a chatty daemon (DEBUG) would block on a full pipe nobody reads
        self.stderr_file = config_file.with_suffix(f".{len(list(config_file.parent.glob('*.stderr')))}.stderr")
        self._stderr = self.stderr_file.open("w")
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=self._stderr, text=True
        )

    def ready(self, timeout: float = 60.0) -> DaemonProcess:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()}")
            try:
                return self.client.call("status")["state"] != "starting"
            except CtlError:
                return False

        wait_for(answers, timeout, "the daemon's control socket")
        return self

    def call(self, cmd: str, **args: Any) -> Any:
        return self.client.call(cmd, **args)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_file.read_text()


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
