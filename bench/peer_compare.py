"""Benchmark: oaiod device A → device B through one hub, side by side with the peers installed here (issue 13).

    python bench/peer_compare.py [--rounds 5] [--rows small,patch,rename,big,initial] [--quick]

oaiod runs as it ships: a hub process (``oaiod hub serve``, SQLite, its own blob store: csh id ``Hub``) and two
daemon processes with default settings, each on its own root. A counting TCP proxy sits in front of the hub's
port, so "wire" is every byte both daemons exchanged with the hub (requests, values and file bodies, both ways).
The peers, each skipped with a message when absent:

- Syncthing: two instances on loopback (no discovery, relays or NAT), one shared folder, watcher delay 1 s;
  its bytes are the connection totals its REST API reports;
- ``rclone copy`` and ``cp`` of the same data (one-shot: the command's run time);
- Unison: a local-to-local two-way sync (``-batch``) of the same tree into an empty folder.

Rows (``--quick`` divides the sizes by about ten, for a smoke run):

- ``small``   a small file created on A → on B;
- ``patch``   4 KiB overwritten in place inside a 200 MiB file → on B (new content at a new offset each round);
- ``rename``  a folder of 2,000 × 16 KiB files renamed on A → renamed on B;
- ``big``     one new 1 GiB file on A → on B;
- ``initial`` 10,000 × 4 KiB files in 100 folders appear on A → all on B.

Each row of each round runs on a fresh pair of devices (a fresh hub; fresh Syncthing instances), so no row adds
to another's folder; ``--reuse`` keeps one pair for the whole run instead, which shows how the cost of a change
grows with the folder. Every round runs every row on every tool, the tools' order rotating per round; the table
shows medians, each peer's ratio (oaiod's time / the peer's: below 1 oaiod is faster) and the CPU seconds the
tool's processes spent (oaiod: hub and both daemons). Data is fresh random bytes each time (no tool finds it
already on B) and is written outside the synced folders first, then renamed in: the clock starts at the rename. A
change is "on B" when B's file is complete under its name (every tool here writes a temp file and renames it into
place); the contents are then checked by sha256, outside the time. Wire bytes are counted until both sides are
quiet again. Nothing is asserted: a shared machine gives ratios, not absolute speeds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "daemon"))

from daemon_helpers import DaemonProcess, wait_for

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
ROWS = ("small", "patch", "rename", "big", "initial")
TITLES = {
    "small": "small file create → on B",
    "patch": "4 KiB overwritten inside a {patch} file → on B",
    "rename": "rename of a folder of {rename} × 16 KiB files → on B",
    "big": "one {big} file → on B",
    "initial": "initial sync {initial} × 4 KiB in {folders} folders → on B",
}
PEERS = {  # the peers each row is compared with (the table)
    "small": ("syncthing",),
    "patch": ("syncthing",),
    "rename": ("syncthing",),
    "big": ("syncthing", "rclone", "cp"),
    "initial": ("syncthing", "unison", "rclone"),
}
TIMEOUT = 1800.0


@dataclass(frozen=True)
class Sizes:
    patch: int = 200 * MiB
    rename: int = 2000
    big: int = 1 * GiB
    initial: int = 10_000
    folders: int = 100


QUICK = Sizes(patch=20 * MiB, rename=200, big=64 * MiB, initial=1000, folders=10)


@dataclass
class Sample:
    seconds: float
    cpu: float
    wire: float | None = None  # bytes


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)

    def add(self, row: str, tool: str, sample: Sample) -> None:
        self.samples.setdefault((row, tool), []).append(sample)
        wire = f", wire {sample.wire / MiB:.2f} MiB" if sample.wire is not None else ""
        print(f"  {row:8} {tool:10} {sample.seconds:7.2f} s, CPU {sample.cpu:6.2f} s{wire}", flush=True)


# -- helpers --------------------------------------------------------------------------------------------------------


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            file.write(block)
            left -= len(block)


def write_tree(folder: Path, files: int, folders: int, size: int) -> None:
    for number in range(files):
        sub = folder / f"d{number % folders:03d}"
        if number < folders:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{number:05d}.bin").write_bytes(os.urandom(size))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".syncthing." not in path.name and not path.name.startswith(".oaiod")
    }


def count_files(folder: Path) -> int:
    total = 0
    for _dir, _dirs, files in os.walk(folder):
        total += sum(1 for name in files if not name.startswith((".syncthing.", ".oaiod-tmp-", "~")))
    return total


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """:func:`process_cpu` of ``pid`` and of its running descendants (Syncthing runs under a monitor process)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += process_cpu(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending += [int(child) for child in children.read_text().split()]
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(check: Callable[[], Any], what: str, interval: float = 0.05, timeout: float = TIMEOUT) -> Any:
    return wait_for(check, timeout, what, interval=interval)


# -- the counting proxy ---------------------------------------------------------------------------------------------


def _pump(source: socket.socket, target: socket.socket, counter: Any) -> None:
    """Move bytes from ``source`` to ``target`` with ``splice`` (no copy through Python) until ``source`` ends."""
    read_end, write_end = os.pipe()
    try:
        while True:
            moved = os.splice(source.fileno(), write_end, 1 << 20)
            if not moved:
                break
            while moved:
                sent = os.splice(read_end, target.fileno(), moved)
                moved -= sent
                with counter.get_lock():
                    counter.value += sent
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _serve_proxy(listener: socket.socket, upstream: tuple[str, int], up: Any, down: Any) -> None:
    while True:
        client, _address = listener.accept()
        server = socket.create_connection(upstream)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run(client: socket.socket = client, server: socket.socket = server) -> None:
            pump = threading.Thread(target=_pump, args=(server, client, down), daemon=True)
            pump.start()
            _pump(client, server, up)
            pump.join()
            client.close()
            server.close()

        threading.Thread(target=run, daemon=True).start()


class CountingProxy:
    """A TCP proxy in its own process in front of ``upstream``: bytes up (to the hub) and down, counted."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.up, self.down = context.Value("q", 0), context.Value("q", 0)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.process = context.Process(target=_serve_proxy, args=(listener, upstream, self.up, self.down), daemon=True)
        self.process.start()
        listener.close()

    def total(self) -> int:
        return int(self.up.value + self.down.value)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


# -- the tools ------------------------------------------------------------------------------------------------------


class Syncer:
    """A tool that keeps A and B in sync by itself: the bench changes A and waits for B."""

    name = ""
    a: Path
    b: Path

    def wire(self) -> float | None:
        return None

    def cpu(self) -> float:
        raise NotImplementedError

    def quiet(self) -> None:
        """Wait until neither side has anything left to do."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Oaiod(Syncer):
    name = "oaiod"

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir()
        for name in ("st", "da", "run", "cfg", "hub", "a", "b"):
            (base / name).mkdir(mode=0o700)
        env = {
            **os.environ,
            "HOME": str(base),
            "XDG_STATE_HOME": str(base / "st"),
            "XDG_DATA_HOME": str(base / "da"),
            "XDG_CONFIG_HOME": str(base / "cfg"),
            "XDG_RUNTIME_DIR": str(base / "run"),
        }
        os.environ.update({key: value for key, value in env.items() if key == "HOME" or key.startswith("XDG_")})
        password = secrets.token_urlsafe(12)
        hub_cli = [sys.executable, "-m", "oaiod.cli", "hub"]
        subprocess.run([*hub_cli, "user", "add", "alice", "--password-stdin", "--data-dir", str(base / "hub")],
                       input=password + "\n", text=True, check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
        port = free_port()
        self.hub_log = (base / "hub.log").open("w")
        self.hub = subprocess.Popen([*hub_cli, "serve", "--data-dir", str(base / "hub"), "--port", str(port)],
                                    env=env, stdout=self.hub_log, stderr=self.hub_log)  # fmt: skip
        self.daemons: list[DaemonProcess] = []
        self.proxy: CountingProxy | None = None
        self.a, self.b = base / "a", base / "b"
        try:
            poll(lambda: self._answers(port), "the hub", interval=0.2, timeout=60)
            self.proxy = CountingProxy(("127.0.0.1", port))
            fd = os.open(base / "pw", os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, password.encode() + b"\n")
            os.close(fd)
            for device, root in (("dev-a", self.a), ("dev-b", self.b)):
                self.daemons.append(self._start(device, root))
            poll(lambda: all(d.call("status")["last_sync"] for d in self.daemons), "first cycles", 0.2, 120)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return True
        except OSError:
            return False

    def _start(self, device: str, root: Path) -> DaemonProcess:
        assert self.proxy is not None
        proxy_port, config = self.proxy.port, self.base / f"{device}.toml"
        config.write_text(
            f'[server]\nurl = "http://127.0.0.1:{proxy_port}/api/"\nusername = "alice"\n'
            f'password_file = "{self.base / "pw"}"\ncsh_id = "Hub"\n'
            f'[client]\nroot = "{root}"\ndevice_id = "{device}"\n'
        )
        return DaemonProcess(config, real=True).ready()

    def wire(self) -> float | None:
        return float(self.proxy.total()) if self.proxy is not None else None

    def cpu(self) -> float:
        return sum(tree_cpu(pid) for pid in (self.hub.pid, *(d.proc.pid for d in self.daemons)))

    def quiet(self) -> None:
        def idle() -> bool:
            return all(d.call("status")["state"] == "idle" for d in self.daemons)

        poll(idle, "oaiod idle", 0.2)
        time.sleep(1.0)  # a watcher event still in its debounce window
        poll(idle, "oaiod idle", 0.2)

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.hub.send_signal(signal.SIGINT)
        try:
            self.hub.wait(30)
        except subprocess.TimeoutExpired:
            self.hub.kill()
        self.hub_log.close()


class Syncthing(Syncer):
    """Two Syncthing instances on loopback sharing one folder (watcher delay 1 s, no discovery or relays)."""

    name = "syncthing"
    folder = "bench"

    def __init__(self, base: Path) -> None:
        self.a, self.b = base / "a", base / "b"
        base.mkdir()
        self.key = secrets.token_urlsafe(24)
        homes = [base / "home-a", base / "home-b"]
        ids = []
        for home in homes:
            subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            found = subprocess.run(["syncthing", f"--home={home}", "--device-id"], check=True, text=True,
                                   capture_output=True)  # fmt: skip
            ids.append(found.stdout.strip())
        ports = [free_port() for _ in range(4)]  # sync a, sync b, gui a, gui b
        self.gui = [f"http://127.0.0.1:{ports[2]}", f"http://127.0.0.1:{ports[3]}"]
        self.procs = []
        for side, (home, root) in enumerate(zip(homes, (self.a, self.b), strict=True)):
            root.mkdir()
            self._configure(home / "config.xml", root, ids, side, ports)
            log = (base / f"syncthing-{side}.log").open("w")
            env = {**os.environ, "STNOUPGRADE": "1", "STNODEFAULTFOLDER": "1"}
            self.procs.append(subprocess.Popen(
                ["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart"],
                env=env, stdout=log, stderr=log))  # fmt: skip
        poll(self._connected, "syncthing connected", 0.5, 120)
        self.quiet()

    def _configure(self, path: Path, root: Path, ids: list[str], side: int, ports: list[int]) -> None:
        tree = ET.parse(path)
        config = tree.getroot()
        for old in config.findall("device") + config.findall("folder"):
            config.remove(old)
        folder = ET.SubElement(config, "folder", id=self.folder, label=self.folder, path=str(root),
                               type="sendreceive", rescanIntervalS="3600", fsWatcherEnabled="true",
                               fsWatcherDelayS="1")  # fmt: skip
        for number, device_id in enumerate(ids):
            ET.SubElement(folder, "device", id=device_id)
            device = ET.SubElement(config, "device", id=device_id, name=f"dev{number}", compression="metadata")
            ET.SubElement(device, "address").text = f"tcp://127.0.0.1:{ports[number]}"
        gui = config.find("gui")
        assert gui is not None
        gui.set("tls", "false")
        for name, value in (("address", self.gui[side].removeprefix("http://")), ("apikey", self.key)):
            element = gui.find(name)
            if element is None:
                element = ET.SubElement(gui, name)
            element.text = value
        options = config.find("options")
        assert options is not None
        settings = {
            "listenAddress": f"tcp://127.0.0.1:{ports[side]}",
            "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false",
            "relaysEnabled": "false",
            "natEnabled": "false",
            "urAccepted": "-1",
            "autoUpgradeIntervalH": "0",
            "crashReportingEnabled": "false",
            "startBrowser": "false",
        }
        for name, value in settings.items():
            for old in options.findall(name):
                options.remove(old)
            ET.SubElement(options, name).text = value
        tree.write(path)

    def _rest(self, side: int, path: str) -> Any:
        request = urllib.request.Request(self.gui[side] + path, headers={"X-API-Key": self.key})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def _connected(self) -> bool:
        try:
            return any(c.get("connected") for c in self._rest(0, "/rest/system/connections")["connections"].values())
        except OSError:
            return False

    def wire(self) -> float | None:
        total = self._rest(0, "/rest/system/connections")["total"]
        return float(total["inBytesTotal"] + total["outBytesTotal"])

    def cpu(self) -> float:
        return sum(tree_cpu(proc.pid) for proc in self.procs)

    def quiet(self) -> None:
        def idle() -> bool:
            for side in (0, 1):
                status = self._rest(side, f"/rest/db/status?folder={self.folder}")
                if status["state"] != "idle" or status["needTotalItems"] or status.get("receiveOnlyTotalItems"):
                    return False
            return True

        poll(idle, "syncthing idle", 0.2)
        time.sleep(1.5)  # the watcher's 1 s delay
        poll(idle, "syncthing idle", 0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class OneShot:
    """A command that copies or syncs a source to a destination once: the bench times the command."""

    def __init__(self, name: str, base: Path) -> None:
        self.name, self.base = name, base
        base.mkdir()
        self.env = {**os.environ, "UNISON": str(base / "unison"), "RCLONE_CONFIG": str(base / "rclone.conf")}

    def command(self, source: Path, target: Path) -> list[str]:
        if self.name == "cp":
            return ["cp", "-r", str(source), str(target)]
        if self.name == "rclone":
            if source.is_file():
                return ["rclone", "copyto", str(source), str(target), "-q"]
            return ["rclone", "copy", str(source), str(target), "-q"]
        return ["unison", str(source), str(target), "-batch", "-auto", "-silent", "-times"]

    def run(self, source: Path, target: Path) -> Sample:
        if self.name == "unison":
            target.mkdir()
        cpu, started = children_cpu(), time.monotonic()
        subprocess.run(self.command(source, target), check=True, env=self.env, stdout=subprocess.DEVNULL)
        return Sample(time.monotonic() - started, children_cpu() - cpu)


# -- the rows -------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, base: Path, sizes: Sizes, results: Results) -> None:
        self.base, self.sizes, self.results = base, sizes, results
        self.staging = base / "staging"
        self.staging.mkdir()

    @contextlib.contextmanager
    def timed(self, syncer: Syncer, row: str) -> Iterator[Callable[[], None]]:
        """Measure from entering to the call of the yielded ``done`` (B has it); wire bytes until quiet again."""
        wire, cpu, started = syncer.wire(), syncer.cpu(), time.monotonic()
        end: list[float] = []

        def done() -> None:
            end.extend((time.monotonic(), syncer.cpu()))

        yield done
        assert end, "done() was not called"
        syncer.quiet()
        after = syncer.wire()
        moved = after - wire if after is not None and wire is not None else None
        self.results.add(row, syncer.name, Sample(end[0] - started, end[1] - cpu, moved))

    def small(self, syncer: Syncer, number: int) -> None:
        name = f"small-{number}.txt"
        with self.timed(syncer, "small") as done:
            (syncer.a / name).write_text(f"round {number}\n")
            poll(lambda: (syncer.b / name).exists(), f"{name} on B", 0.02)
            done()

    def patch(self, syncer: Syncer, number: int) -> None:
        name = "patch.bin"
        if not (syncer.a / name).exists():  # made once per pair of devices
            write_random(self.staging / name, self.sizes.patch)
            os.rename(self.staging / name, syncer.a / name)
            poll(lambda: (syncer.b / name).exists(), f"{name} on B", 0.2)
            syncer.quiet()
        before = (syncer.b / name).stat()
        offset = secrets.randbelow(self.sizes.patch // (4 * KiB)) * 4 * KiB

        def changed() -> bool:
            with contextlib.suppress(FileNotFoundError):
                now = (syncer.b / name).stat()
                return (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)
            return False

        with self.timed(syncer, "patch") as done:
            with (syncer.a / name).open("r+b") as file:
                file.seek(offset)
                file.write(os.urandom(4 * KiB))
            poll(changed, f"{name} changed on B", 0.05)
            done()
        check_same(syncer.a / name, syncer.b / name)

    def rename(self, syncer: Syncer, number: int) -> None:
        old, new, files = f"ren-{number}", f"renamed-{number}", self.sizes.rename
        write_tree(self.staging / old, files, 1, 16 * KiB)
        os.rename(self.staging / old, syncer.a / old)
        poll(lambda: (syncer.b / old).is_dir() and count_files(syncer.b / old) == files, f"{old} on B", 0.2)
        syncer.quiet()
        with self.timed(syncer, "rename") as done:
            os.rename(syncer.a / old, syncer.a / new)
            poll(lambda: not (syncer.b / old).exists() and (syncer.b / new).is_dir()
                 and count_files(syncer.b / new) == files, f"{new} on B", 0.05)  # fmt: skip
            done()
        check_trees(syncer.a / new, syncer.b / new)

    def big(self, syncer: Syncer, number: int) -> None:
        name = f"big-{number}.bin"
        write_random(self.staging / name, self.sizes.big)
        with self.timed(syncer, "big") as done:
            os.rename(self.staging / name, syncer.a / name)
            poll(lambda: (syncer.b / name).exists(), f"{name} on B", 0.05)
            done()
        check_same(syncer.a / name, syncer.b / name)
        (syncer.a / name).unlink()  # the disk holds one at a time (oaiod keeps B's in its trash, the hub a version)
        syncer.quiet()

    def initial(self, syncer: Syncer, number: int) -> None:
        name, files = f"tree-{number}", self.sizes.initial
        write_tree(self.staging / name, files, self.sizes.folders, 4 * KiB)
        with self.timed(syncer, "initial") as done:
            os.rename(self.staging / name, syncer.a / name)
            poll(lambda: (syncer.b / name).is_dir() and count_files(syncer.b / name) == files, f"{name} on B", 0.1)
            done()
        check_trees(syncer.a / name, syncer.b / name)

    def one_shot(self, tool: OneShot, row: str, number: int) -> None:
        if row == "big":
            source = self.staging / f"big-{tool.name}-{number}.bin"
            write_random(source, self.sizes.big)
        else:
            source = self.staging / f"tree-{tool.name}-{number}"
            write_tree(source, self.sizes.initial, self.sizes.folders, 4 * KiB)
        target = tool.base / source.name
        sample = tool.run(source, target)
        if row == "big":
            check_same(source, target)
        else:
            check_trees(source, target)
        self.results.add(row, tool.name, sample)
        for path in (source, target):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def check_same(a: Path, b: Path) -> None:
    if sha256_file(a) != sha256_file(b):
        raise AssertionError(f"{b} differs from {a}")


def check_trees(a: Path, b: Path) -> None:
    if tree_hashes(a) != tree_hashes(b):
        raise AssertionError(f"{b} differs from {a}")


# -- the table ------------------------------------------------------------------------------------------------------


def human(size: int) -> str:
    return f"{size // GiB} GiB" if size >= GiB and size % GiB == 0 else f"{size // MiB} MiB"


def table(results: Results, rows: list[str], sizes: Sizes) -> str:
    labels = {"patch": human(sizes.patch), "big": human(sizes.big), "rename": f"{sizes.rename:,}",
              "initial": f"{sizes.initial:,}", "folders": str(sizes.folders)}  # fmt: skip
    lines = [
        "| measure | oaiod | CPU-s | wire | peer | CPU-s | wire | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = results.samples.get((row, "oaiod"))
        if not ours:
            continue
        seconds = statistics.median(s.seconds for s in ours)
        cpu = statistics.median(s.cpu for s in ours)
        wires = [s.wire for s in ours if s.wire is not None]
        wire = f"{statistics.median(wires) / MiB:.2f} MiB" if wires else "–"
        first = True
        for peer in PEERS[row]:
            theirs = results.samples.get((row, peer))
            if not theirs:
                continue
            peer_seconds = statistics.median(s.seconds for s in theirs)
            peer_cpu = statistics.median(s.cpu for s in theirs)
            peer_wires = [s.wire for s in theirs if s.wire is not None]
            peer_wire = f"{statistics.median(peer_wires) / MiB:.2f} MiB" if peer_wires else "–"
            title = TITLES[row].format(**labels) if first else ""
            mine = f"{seconds:.2f} s | {cpu:.2f} | {wire}" if first else " | | "
            lines.append(f"| {title} | {mine} | {peer} {peer_seconds:.2f} s | {peer_cpu:.2f} | {peer_wire} | "
                         f"{seconds / peer_seconds:.2f} |")  # fmt: skip
            first = False
        if first:
            lines.append(f"| {TITLES[row].format(**labels)} | {seconds:.2f} s | {cpu:.2f} | {wire} | – | | | |")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------------------------


def available(tool: str) -> bool:
    if shutil.which(tool) is None:
        print(f"{tool} is not installed: skipped (Debian: apt-get install {tool})")
        return False
    return True


def start_syncers(base: Path, with_syncthing: bool) -> list[Syncer]:
    """A fresh pair of oaiod devices on a fresh hub (and of Syncthing devices) under ``base``."""
    base.mkdir()
    syncers: list[Syncer] = []
    try:
        syncers.append(Oaiod(base / "oaiod"))
        if with_syncthing:
            syncers.append(Syncthing(base / "syncthing"))
    except BaseException:
        stop_syncers(syncers, None)
        raise
    return syncers


def stop_syncers(syncers: list[Syncer], remove: Path | None) -> None:
    for syncer in syncers:
        syncer.stop()
    if remove is not None:
        shutil.rmtree(remove, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--quick", action="store_true", help="about a tenth of the sizes: a smoke run")
    parser.add_argument("--tools", default="oaiod,syncthing,rclone,unison,cp", help="comma-separated")
    parser.add_argument("--reuse", action="store_true",
                        help="one pair of devices per tool for the whole run (each row adds to the same folder), "
                             "instead of a fresh pair per row and round")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print it")
    args = parser.parse_args()
    rows = [row for row in args.rows.split(",") if row]
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    wanted = set(args.tools.split(","))
    sizes = QUICK if args.quick else Sizes()
    results = Results()
    tmp = tempfile.mkdtemp(prefix="oaiod-peers-")
    base = Path(tmp)
    one_shots: list[OneShot] = []
    shared: list[Syncer] = []
    try:
        for name in ("rclone", "unison", "cp"):
            if name in wanted and available(name):
                one_shots.append(OneShot(name, base / name))
        with_syncthing = "syncthing" in wanted and available("syncthing")
        if args.reuse:
            shared = start_syncers(base / "shared", with_syncthing)
        bench = Bench(base, sizes, results)
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}", flush=True)
            for row in rows:
                syncers = shared or start_syncers(base / f"r{number}-{row}", with_syncthing)
                try:
                    tools: list[Syncer | OneShot] = [*syncers]
                    tools += [tool for tool in one_shots if tool.name in PEERS[row]]
                    shift = number % len(tools)
                    for tool in tools[shift:] + tools[:shift]:
                        if isinstance(tool, OneShot):
                            bench.one_shot(tool, row, number)
                        else:
                            getattr(bench, row)(tool, number)
                finally:
                    if not shared:
                        stop_syncers(syncers, None if args.keep else base / f"r{number}-{row}")
    finally:
        stop_syncers(shared, None)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rounds{' (--quick sizes)' if args.quick else ''}; ratio = oaiod / peer")
    print(table(results, rows, sizes))


if __name__ == "__main__":
    main()
