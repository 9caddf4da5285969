"""Benchmark: CPU and memory of an idle daemon watching 100,000 files (issue §8: < 1 % CPU, RSS < 150 MB).

    python bench/daemon_idle.py [--files 100000] [--folders 1000] [--idle 60] [--stacks 0]

What runs: a hub in its own process (``oaiod hub serve``, SQLite, **Local** storage in the temp folder: the
embedded Hub storage would make the initial upload of 100k files the slow part of this script, and this script
measures the idle daemon, not the transfer) and one real ``oaiod run`` process with default sync settings (a
cycle every 30 s, a rescan every 600 s) whose client root holds ``--files`` small files in ``--folders``
folders before it starts. After the initial sync (a cycle that found nothing to do, and the hub's manifest
lists every file) the script samples ``/proc/PID/stat`` (utime + stime) and ``VmRSS`` of the daemon and of the
hub every 5 s for ``--idle`` seconds and prints the numbers. Then it measures a full rescan of the tree (the
periodic job's cost, averaged over the rescan interval): ``ctl reload`` rebuilds the components, and the new
engine's first cycle indexes every root (so the number includes re-watching 1,000 folders and a login).

``--stacks N`` then shows where an idle daemon spends its time without a profiler (py-spy is not installed and
cProfile sees only the main thread): N thread dumps (``kill -USR1``: the daemon's faulthandler writes every
thread's stack to its stderr) half a second apart, and the most frequent innermost frames.

The daemon's memory: ``oaiod run`` re-executes itself with ``PYTHONMALLOC=malloc`` and trims glibc's heap after
every cycle (``oaiod.heap.use_system_malloc``/``release_free_memory``). Before that, the idle daemon held
302 MB after the initial sync (pymalloc arenas and glibc heap pages left by the sync's temporary objects; about
85 MB were live); trimming alone gave 228 MB, both 123 MB. Run with ``PYTHONMALLOC=pymalloc`` to compare.

Prints numbers; asserts nothing. Numbers taken on a loaded machine are noisy: say so when quoting them.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "daemon"))

from daemon_helpers import DaemonProcess, wait_for
from daemon_propagation import cpu_seconds, isolate, rss_mb  # bench/ is on sys.path: this script's folder

OAIOD = [sys.executable, "-c", "from oaiod.cli import main; main()"]
SAMPLE_EVERY = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_hub(base: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """``oaiod hub serve`` with user alice and Local storage; (process, url, password)."""
    data, storage, password = base / "hub", base / "csh", secrets.token_urlsafe(12)
    storage.mkdir()
    where = ["--data-dir", str(data)]
    subprocess.run([*OAIOD, "hub", "user", "add", "alice", *where, "--password-stdin"], input=password.encode(),
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([*OAIOD, "hub", "storage", "set", "Local", f"root_folder={storage}", *where], check=True,
                   capture_output=True)  # fmt: skip
    port = free_port()
    proc = subprocess.Popen([*OAIOD, "hub", "serve", *where, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=(base / "hub.stderr").open("wb"))  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"the hub exited: {(base / 'hub.stderr').read_text()[-2000:]}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 60, "the hub to listen")
    return proc, f"http://127.0.0.1:{port}/api/", password


def make_tree(root: Path, files: int, folders: int) -> float:
    """``files`` small files spread over ``folders`` folders; the seconds it took."""
    started = time.monotonic()
    per_folder = max(1, -(-files // folders))
    for i in range(files):
        folder = root / f"dir{i // per_folder:04d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:06d}.txt").write_bytes(f"file {i}\n".encode())
    return time.monotonic() - started


def start_daemon(base: Path, url: str, password: str) -> DaemonProcess:
    fd = os.open(base / "pw", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, password.encode() + b"\n")
    os.close(fd)
    config = base / "dev-a.toml"
    config.write_text(
        f'[server]\nurl = "{url}"\nusername = "alice"\npassword_file = "{base / "pw"}"\ncsh_id = "Local"\n'
        f'[client]\nroot = "{base / "root"}"\ndevice_id = "dev-a"\n[log]\nlevel = "INFO"\n'
    )
    return DaemonProcess(config, real=True).ready(120)


def initial_sync(daemon: DaemonProcess, files: int, url: str, password: str) -> float:
    """Wait until a cycle found nothing to do and the hub lists every file; the seconds it took."""
    started = time.monotonic()
    last_shown = [0.0]

    def settled() -> bool:
        status = daemon.call("status")
        cycle = (status.get("engine") or {}).get("last_cycle") or {}
        if time.monotonic() - last_shown[0] > 30:
            last_shown[0] = time.monotonic()
            done = {k: cycle.get(k) for k in ("hashed", "uploads", "copies", "pushed", "errors")}
            print(f"  … {time.monotonic() - started:5.0f} s: {status['state']}, last cycle {done}", flush=True)
        if status["state"] != "idle" or not cycle or cycle.get("errors"):
            return False
        return not any(cycle.get(k) for k in ("hashed", "uploads", "copies", "pushed", "pulled", "downloads"))

    wait_for(settled, 7200, "the initial sync", interval=2.0)
    took = time.monotonic() - started
    listed = server_file_count(url, password)
    if listed != files:
        raise SystemExit(f"the hub's manifest lists {listed} files, not {files}")
    return took


def server_file_count(url: str, password: str) -> int:
    from oaiod.secrets import Secret
    from oaiod.server_api import OaioServerApi

    api = OaioServerApi(url, "alice", Secret(password), device_id="bench-check", app_id="bench")
    try:
        roots = [o for o in api.stampz().objects if o.client_values.get("_name") == "oaiod-root"]
    finally:
        api.close()
    return len((roots[0].client_values.get("_oaiod") or {}).get("files") or {}) if roots else 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def sample_idle(pids: dict[str, int], seconds: float) -> dict[str, dict[str, Any]]:
    """CPU % over ``seconds`` and RSS samples every :data:`SAMPLE_EVERY` s of each process."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rss: dict[str, list[float]] = {name: [] for name in pids}
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        for name, pid in pids.items():
            rss[name].append(rss_mb(pid))
        time.sleep(min(SAMPLE_EVERY, max(0.0, seconds - elapsed)))
    elapsed = time.monotonic() - started
    return {
        name: {
            "cpu": (cpu_seconds(pid) - before[name]) / elapsed * 100,
            "rss_min": min(rss[name]),
            "rss_max": max(rss[name]),
            "threads": threads(pid),
        }
        for name, pid in pids.items()
    }


def rescan_cost(daemon: DaemonProcess) -> tuple[float, float]:
    """(wall seconds, daemon CPU seconds) of ``ctl reload`` and the new engine's first cycle: a full rescan."""
    pid = daemon.proc.pid
    before, started = cpu_seconds(pid), time.monotonic()
    daemon.call("reload", wait=True)

    def idle_again() -> bool:
        status = daemon.call("status")
        return bool(status["last_sync"]) and status["state"] == "idle"

    wait_for(idle_again, 600, "the cycle after the reload", interval=0.5)
    return time.monotonic() - started, cpu_seconds(pid) - before


FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def sample_stacks(daemon: DaemonProcess, count: int) -> collections.Counter[str]:
    """The innermost frame of every thread over ``count`` faulthandler dumps (SIGUSR1), counted."""
    offset = daemon.stderr_file.stat().st_size
    for _ in range(count):
        daemon.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
    frames: collections.Counter[str] = collections.Counter()
    top = True
    with daemon.stderr_file.open() as text:
        text.seek(offset)
        for line in text:
            if line.startswith(("Thread 0x", "Current thread 0x")):
                top = True
                continue
            match = FRAME.match(line)
            if match and top:
                frames[f"{Path(match['file']).name}:{match['line']} {match['func']}"] += 1
                top = False
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=1_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--stacks", type=int, default=0, help="thread dumps to sample after the measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="oaiod-idle-")
    base = Path(tmp)
    isolate(base)
    hub, url, password = start_hub(base)
    daemon: DaemonProcess | None = None
    try:
        made = make_tree(base / "root", args.files, args.folders)
        print(f"tree: {args.files} files in {args.folders} folders, made in {made:.1f} s", flush=True)
        daemon = start_daemon(base, url, password)
        took = initial_sync(daemon, args.files, url, password)
        print(
            f"initial sync of {args.files} files to Local storage through the hub: {took:.0f} s; "
            f"daemon RSS right after it {rss_mb(daemon.proc.pid):.0f} MB",
            flush=True,
        )
        time.sleep(5)  # let the last cycle's garbage settle
        pids = {"daemon": daemon.proc.pid, "hub": hub.pid}
        numbers = sample_idle(pids, args.idle)
        for name, n in numbers.items():
            what = f"daemon watching {args.files} files" if name == "daemon" else "hub (its own process)"
            target = " (targets: < 1 %, < 150 MB)" if name == "daemon" else ""
            print(
                f"idle {what} over {args.idle:.0f} s: CPU {n['cpu']:.2f} %, "
                f"RSS {n['rss_min']:.0f}-{n['rss_max']:.0f} MB, {n['threads']} threads{target}"
            )
        wall, cpu = rescan_cost(daemon)
        interval = daemon.config.sync.rescan_interval
        print(
            f"one full rescan (after a reload): {wall:.1f} s wall, {cpu:.1f} s daemon CPU; every {interval:.0f} s "
            f"that averages {cpu / interval * 100:.2f} % CPU; RSS after it {rss_mb(daemon.proc.pid):.0f} MB"
        )
        if args.stacks:
            print(f"innermost frames of the daemon's threads over {args.stacks} dumps:")
            for frame, seen in sample_stacks(daemon, args.stacks).most_common(15):
                print(f"  {seen:5d}  {frame}")
    finally:
        if daemon is not None:
            daemon.stop()
        hub.terminate()
        hub.wait(30)
        if args.keep:
            print(f"kept {base}")
        else:
            subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
