"""The hub as a process of its own (``oaiod hub serve``): users and storage are set up in its database before it
starts, and it can be killed with SIGKILL and started again on the same data folder and port."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from oaiod.hub.service import HubService
from oaiod.hub.settings import HubSettings

USERS = {"alice": True, "bob": False}  # name -> supervisor


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HubProcess:
    """``oaiod hub serve`` on 127.0.0.1: ``url``, ``users`` (name -> password) and the data folder survive a
    :meth:`kill` and :meth:`start`. The attributes ``url`` and ``users`` are what ``e2e_helpers.Cluster`` needs."""

    def __init__(self, data_dir: Path, storage: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self.users = {name: secrets.token_urlsafe(12) for name in USERS}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        service = HubService.open(HubSettings(data_dir=data_dir))
        try:
            for name, supervisor in USERS.items():
                service.add_user(name, self.users[name], supervisor=supervisor)
            service.set_storage("Local", {"root_folder": str(storage)})
        finally:
            service.close()

    def start(self, timeout: float = 60.0) -> None:
        """Start serving and return once the hub answers HTTP."""
        assert self.proc is None or self.proc.poll() is not None, "the hub runs already"
        log = (self.data_dir / f"hub.{self.starts}.log").open("wb")
        self.starts += 1
        cmd = [sys.executable, "-m", "oaiod.cli", "hub", "serve", "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], stdout=log, stderr=log, env=dict(os.environ))
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"the hub exited {self.proc.returncode}; see {self.data_dir}/hub.*.log")
            if time.monotonic() > deadline:
                raise AssertionError(f"the hub on port {self.port} did not answer within {timeout} s")
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "login/", timeout=5) as answer:
                answer.read()
            return True
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL: whatever request was running is cut where it was (a commit included)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
