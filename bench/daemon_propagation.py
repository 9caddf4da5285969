"""Benchmark: change propagation of a small file A → B through a hub with two real daemon processes
(default sync settings), and the idle CPU and RSS of a daemon watching many files.

    python bench/daemon_propagation.py [--rounds 20] [--files 10000]

Prints numbers; asserts nothing (targets: median propagation < 2 s; idle < 1 % CPU and RSS < 150 MB). The idle
target at the issue's size (100,000 files) is measured by bench/daemon_idle.py.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "daemon"))

from daemon_helpers import DaemonProcess, wait_for

from oaiod.hub.server import HubServer
from oaiod.hub.settings import HubSettings


def isolate(base: Path) -> None:
    """HOME and XDG folders inside ``base``: the daemon's state, socket and logs never touch the real user's."""
    for name in ("st", "da", "run", "cfg"):
        (base / name).mkdir(mode=0o700)
    os.environ.update(
        HOME=str(base),
        XDG_STATE_HOME=str(base / "st"),
        XDG_DATA_HOME=str(base / "da"),
        XDG_CONFIG_HOME=str(base / "cfg"),
        XDG_RUNTIME_DIR=str(base / "run"),
    )


def setup(base: Path) -> tuple[HubServer, Path]:
    isolate(base)
    hub = HubServer(HubSettings(data_dir=base / "hub", port=0)).start()
    password = secrets.token_urlsafe(12)
    hub.service.add_user("alice", password)
    (base / "csh").mkdir()
    hub.service.set_storage("Local", {"root_folder": str(base / "csh")})
    fd = os.open(base / "pw", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, password.encode() + b"\n")
    os.close(fd)
    return hub, base / "pw"


def start(base: Path, hub: HubServer, password_file: Path, device: str) -> DaemonProcess:
    config = base / f"{device}.toml"
    config.write_text(
        f'[server]\nurl = "{hub.url}"\nusername = "alice"\npassword_file = "{password_file}"\ncsh_id = "Local"\n'
        f'[client]\nroot = "{base / device}"\ndevice_id = "{device}"\n'
    )
    return DaemonProcess(config, real=True).ready()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--files", type=int, default=10_000, help="files the idle daemon watches")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaiod-bench-") as tmp:
        base = Path(tmp)
        hub, password_file = setup(base)
        a, b = start(base, hub, password_file, "dev-a"), start(base, hub, password_file, "dev-b")
        try:
            wait_for(lambda: a.call("status")["last_sync"] and b.call("status")["last_sync"], 120, "first cycles")
            times = []
            for i in range(args.rounds):
                target = b.config.client.root / f"p{i}.txt"
                started = time.monotonic()
                (a.config.client.root / f"p{i}.txt").write_text(f"round {i}")
                wait_for(lambda t=target: t.exists(), 120, "propagation")
                times.append(time.monotonic() - started)
                time.sleep(0.5)
            print(
                f"propagation A→B of a small file, {args.rounds} rounds: median {statistics.median(times):.2f} s, "
                f"min {min(times):.2f} s, max {max(times):.2f} s (target: median < 2 s)"
            )
            tree = a.config.client.root / "many"
            for i in range(args.files):
                folder = tree / f"d{i // 500}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"f{i}.txt").write_text(str(i))
            wait_for(
                lambda: len(list((b.config.client.root / "many").rglob("*.txt"))) == args.files, 1200, "the tree on b"
            )
            wait_for(lambda: a.call("status")["state"] == "idle", 600, "a idle")
            time.sleep(5)
            pid = a.proc.pid
            before = cpu_seconds(pid)
            time.sleep(args.idle)
            cpu = (cpu_seconds(pid) - before) / args.idle * 100
            print(
                f"idle daemon watching {args.files} files: CPU {cpu:.2f} % over {args.idle:.0f} s, "
                f"RSS {rss_mb(pid):.0f} MB (targets: < 1 %, < 150 MB)"
            )
        finally:
            a.stop()
            b.stop()
            hub.stop()


if __name__ == "__main__":
    main()
