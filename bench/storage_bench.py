"""Storage throughput and memory, printed (no asserts): ``python bench/storage_bench.py [--size MIB]``.

* Local put and get of one file vs ``cp`` (target: at least 70 % of cp; our put also fsyncs, so cp + fsync
  is shown as well).
* WebDav upload and download over loopback vs ``curl -T`` / ``curl -o`` to the same wsgidav server, which runs
  in its own process so client and server do not share a GIL (target: within 2x of curl).
* Memory growth of this process during the WebDav transfers: the peak of Python's allocations (tracemalloc)
  and the peak RSS above the level before (sampled every 20 ms) (target: below 64 MiB).
* Hub (the hub's blob store, ``oaiod hub serve`` in its own process): the Hub backend's put (sha256 pass,
  createUpload, 8 MiB chunks, finish with the hub's fsync) and get vs ``curl -T`` of the same file to the hub's
  ``data/`` URL of an upload created beforehand (curl alone, and curl plus the finish call that verifies and
  publishes it) and ``curl -o`` of the ``download/`` URL; memory growth as for WebDav (target: within 2x of
  curl, memory below 64 MiB).
* Small files (``--only small``): 10,000 x 4 KiB files in 50 folders, Local ``put_many`` (through the daemon's
  wrappers) of the tree into a storage folder vs ``rclone copy`` of the same tree into the same storage folder, and
  ``get_many`` of those objects to new local files vs ``rclone copy`` back; ``os.sync()`` before each timed phase,
  rounds interleaved, each round and the median ratio printed (target: put and get at least as fast as rclone);
  the ``flush()`` (syncfs) the engine adds after put_many, which rclone does not do, is shown apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "storage"))

import storage_servers as servers  # noqa: E402

from oaiod.storage.base import Backend  # noqa: E402
from oaiod.storage.hub import HubBackend  # noqa: E402
from oaiod.storage.local import LocalBackend  # noqa: E402
from oaiod.storage.webdav import WebDavBackend  # noqa: E402

MIB = 1024 * 1024


REPEAT = 3


def timed(action: Callable[[], object], repeat: int | None = None) -> float:
    """The best of ``repeat`` runs (the machine is shared: the best run is the least disturbed one)."""
    best = float("inf")
    for _ in range(repeat or REPEAT):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as file:
        for _ in range(size // MIB):
            file.write(block)
        file.write(block[: size % MIB])


def cp_and_fsync(src: Path, dst: Path) -> None:
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_during(action: Callable[[], object]) -> tuple[float, int, int]:
    """Seconds, tracemalloc peak and RSS growth peak while ``action`` runs."""
    baseline, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes() - baseline)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        seconds = timed(action, 1)
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        done.set()
        sampler.join()
    return seconds, traced, peak[0]


def rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:8.1f} MiB/s ({seconds:6.2f} s)"


def bench_local(work: Path, source: Path, size: int) -> None:
    root = work / "local-root"
    root.mkdir()
    backend = LocalBackend(root)
    cp = timed(lambda: subprocess.run(["cp", str(source), str(work / "cp-copy")], check=True))
    cp_sync = timed(lambda: cp_and_fsync(source, work / "cp-sync-copy"))
    put = timed(lambda: backend.put_file("bench/object", source))
    get = timed(lambda: backend.get_file("bench/object", work / "local-back"))
    print("Local folder")
    print(f"  cp                 {rate(size, cp)}")
    print(f"  cp + fsync         {rate(size, cp_sync)}")
    print(f"  put (fsync, rename){rate(size, put)}  = {cp / put:5.0%} of cp, {cp_sync / put:5.0%} of cp+fsync")
    print(f"  get (fsync, rename){rate(size, get)}  = {cp / get:5.0%} of cp, {cp_sync / get:5.0%} of cp+fsync")
    for name in ("cp-copy", "cp-sync-copy", "local-back"):
        (work / name).unlink()
    shutil.rmtree(root)


def start_webdav_process(root: Path) -> tuple[subprocess.Popen[str], str]:
    code = (
        "import sys, threading; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "import storage_servers as s; srv = s.start_webdav(Path(sys.argv[1])); print(srv.port, flush=True);"
        "threading.Event().wait()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root), str(ROOT / "tests" / "storage")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def bench_webdav(work: Path, source: Path, size: int) -> None:
    root = work / "dav-root"
    root.mkdir()
    proc, url = start_webdav_process(root)
    try:
        user = f"{servers.WEBDAV_USER}:{servers.WEBDAV_PASSWORD}"  # a throw-away test password
        curl = ["curl", "-sS", "-f", "-u", user]
        put_cmd = [*curl, "-o", os.devnull, "-T", str(source), f"{url}/curl.bin"]
        curl_put = timed(lambda: subprocess.run(put_cmd, check=True))
        curl_get = timed(lambda: subprocess.run([*curl, "-o", str(work / "curl-back"), f"{url}/curl.bin"], check=True))
        backend = WebDavBackend(url, "oaiod", servers.WEBDAV_USER, servers.WEBDAV_PASSWORD)
        put = timed(lambda: backend.put_file("bench/object", source))
        get = timed(lambda: backend.get_file("bench/object", work / "dav-back"))
        # measured again, apart: tracemalloc slows every allocation down
        _, put_traced, put_rss = memory_during(lambda: backend.put_file("bench/object", source))
        _, get_traced, get_rss = memory_during(lambda: backend.get_file("bench/object", work / "dav-back"))
        backend.close()
    finally:
        proc.terminate()
        proc.wait()
    print("WebDav over loopback (wsgidav in its own process)")
    print(f"  curl -T            {rate(size, curl_put)}")
    print(f"  put (PUT + MOVE)   {rate(size, put)}  = {put / curl_put:4.2f}x the time of curl")
    print(f"  curl -o            {rate(size, curl_get)}")
    print(f"  get                {rate(size, get)}  = {get / curl_get:4.2f}x the time of curl")
    print("Memory growth during the WebDav transfers")
    print(f"  put: tracemalloc peak {put_traced / MIB:6.1f} MiB, RSS growth peak {put_rss / MIB:6.1f} MiB")
    print(f"  get: tracemalloc peak {get_traced / MIB:6.1f} MiB, RSS growth peak {get_rss / MIB:6.1f} MiB")
    shutil.rmtree(root)


HUB_USER, HUB_PASSWORD = "bench", "bench-password-not-secret"


def start_hub_process(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """``oaiod hub serve`` on a free port with one user; its base URL."""
    oaiod = [sys.executable, "-c", "from oaiod.cli import main; main()"]
    subprocess.run([*oaiod, "hub", "user", "add", HUB_USER, "--data-dir", str(data_dir), "--password-stdin"],
                   input=HUB_PASSWORD, text=True, check=True, capture_output=True)  # fmt: skip
    port = servers.free_port()
    proc = subprocess.Popen([*oaiod, "hub", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    servers.wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/api/"


class CurlToHub:
    """``curl -T`` into the data/ URL of an upload created (and afterwards finished) with a logged-in session."""

    def __init__(self, url: str, source: Path) -> None:
        import hashlib

        import requests

        self.url, self.source, self.session = url, source, requests.Session()
        self.session.get(url + "login/")
        self.csrf = self.session.cookies["csrftoken"]
        self.session.headers["X-CSRFToken"] = self.csrf
        self.session.post(url + "login/", json={"username": HUB_USER, "password": HUB_PASSWORD}).raise_for_status()
        digest = hashlib.sha256()
        with open(source, "rb") as file:
            while block := file.read(8 * MIB):
                digest.update(block)
        self.sha256, self.size, self.upload_id = digest.hexdigest(), source.stat().st_size, ""
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        self.curl = ["curl", "-sS", "-f", "-o", os.devnull, "-b", cookies, "-H", f"X-CSRFToken: {self.csrf}"]

    def create(self) -> None:
        import secrets

        self.session.delete(self.url + "hub/blobs/upload/bench/curl.bin").raise_for_status()  # the last run's
        self.upload_id = secrets.token_urlsafe(24)
        body = {"uploadId": self.upload_id, "sha256": self.sha256, "size": self.size, "proposedUploadMethods": {
            "putUrl": {"contentType": "application/octet-stream", "contentLength": self.size}}}  # fmt: skip
        self.session.put(self.url + "hub/blobs/upload/bench/curl.bin", json=body).raise_for_status()

    def upload(self) -> None:
        data_url = f"{self.url}hub/blobs/data/bench/curl.bin?uploadId={self.upload_id}&offset=0"
        subprocess.run([*self.curl, "-T", str(self.source), data_url], check=True)

    def finish(self) -> None:
        url = self.url + "hub/blobs/finish-upload/bench/curl.bin"
        self.session.post(url, json={"uploadId": self.upload_id}).raise_for_status()

    def download(self, target: Path) -> None:
        curl = [*self.curl[:4], str(target), *self.curl[5:]]
        subprocess.run([*curl, self.url + "hub/blobs/download/bench/curl.bin"], check=True)


def timed_around(prepare: Callable[[], object], action: Callable[[], object]) -> float:
    """Like :func:`timed`, with an untimed ``prepare`` before each run."""
    best = float("inf")
    for _ in range(REPEAT):
        prepare()
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def bench_hub(work: Path, source: Path, size: int) -> None:
    proc, url = start_hub_process(work / "hub-data")
    try:
        curl = CurlToHub(url, source)
        curl_put = timed_around(curl.create, curl.upload)
        curl_put_finish = timed_around(curl.create, lambda: (curl.upload(), curl.finish()))
        curl_get = timed(lambda: curl.download(work / "curl-back"))
        backend = HubBackend.from_args({"url": url, "username": HUB_USER, "password": HUB_PASSWORD})
        backend.put_bytes("bench/warm", b"x")  # logs in: the scrypt login stays out of the timings
        put = timed(lambda: backend.put_file("bench/object", source))
        get = timed(lambda: backend.get_file("bench/object", work / "hub-back"))
        _, put_traced, put_rss = memory_during(lambda: backend.put_file("bench/object", source))
        _, get_traced, get_rss = memory_during(lambda: backend.get_file("bench/object", work / "hub-back"))
        backend.close()
    finally:
        proc.terminate()
        proc.wait()
    print("Hub blob store over loopback (oaiod hub serve in its own process)")
    print(f"  curl -T data/      {rate(size, curl_put)}")
    print(f"  curl -T + finish   {rate(size, curl_put_finish)}")
    print(f"  put (hash, chunks) {rate(size, put)}  = {put / curl_put:4.2f}x the time of curl -T, "
          f"{put / curl_put_finish:4.2f}x of curl -T + finish")  # fmt: skip
    print(f"  curl -o            {rate(size, curl_get)}")
    print(f"  get (verified)     {rate(size, get)}  = {get / curl_get:4.2f}x the time of curl")
    print("Memory growth during the Hub transfers")
    print(f"  put: tracemalloc peak {put_traced / MIB:6.1f} MiB, RSS growth peak {put_rss / MIB:6.1f} MiB")
    print(f"  get: tracemalloc peak {get_traced / MIB:6.1f} MiB, RSS growth peak {get_rss / MIB:6.1f} MiB")
    for name in ("curl-back", "hub-back"):
        (work / name).unlink(missing_ok=True)
    shutil.rmtree(work / "hub-data")


SMALL_FILES, SMALL_SIZE, SMALL_FOLDERS = 10_000, 4096, 50


def make_small_tree(folder: Path) -> list[str]:
    """``SMALL_FILES`` random files in ``SMALL_FOLDERS`` folders under ``folder``; their relative paths."""
    names = [f"folder {n % SMALL_FOLDERS:02d}/file {n:05d}.bin" for n in range(SMALL_FILES)]
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(SMALL_SIZE))
    return names


def synced_timing(action: Callable[[], object]) -> float:
    """Seconds ``action`` takes, after an ``os.sync()`` so that no earlier phase's write-back is measured."""
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rclone_copy(src: Path, dst: Path) -> None:
    subprocess.run(["rclone", "copy", "-q", "--config", os.devnull, str(src), str(dst)], check=True)


def small_round(backend: Backend, work: Path, names: list[str], number: int) -> dict[str, float]:
    """One round: put_many and rclone copy up, get_many and rclone copy down (who goes first alternates)."""
    from oaiod.storage.base import Transfer

    tree, store, back = work / "small-tree", work / "small-store", work / f"small-back-{number}"
    prefix = f"bench/round {number}"
    puts = [Transfer(f"{prefix}/{name}", str(tree / name)) for name in names]
    gets = [Transfer(f"{prefix}/{name}", str(back / "oaiod" / name)) for name in names]
    times: dict[str, float] = {}

    def put() -> None:
        assert all(result.error is None for result in backend.put_many(puts))
        started = time.perf_counter()
        backend.flush()  # what the engine pays before its commit point (rclone copy does not sync)
        times["flush"] = time.perf_counter() - started

    def get() -> None:
        for folder in {Path(item.local_path).parent for item in gets}:
            folder.mkdir(parents=True, exist_ok=True)
        assert all(result.error is None for result in backend.get_many(gets))

    for phase, ours, theirs in (
        ("put", put, lambda: rclone_copy(tree, store / f"rclone {number}")),
        ("get", get, lambda: rclone_copy(store / f"rclone {number}", back / "rclone")),
    ):
        if number % 2:
            times[f"rclone {phase}"] = synced_timing(theirs)
        times[phase] = synced_timing(ours)
        if not number % 2:
            times[f"rclone {phase}"] = synced_timing(theirs)
    times["put"] -= times["flush"]
    shutil.rmtree(back)
    return times


def bench_small(work: Path, _source: Path, _size: int) -> None:
    from oaiod.storage.wrappers import WrapperConfig, wrap_backend

    if shutil.which("rclone") is None:
        print("Small files: rclone is not installed (apt-get install rclone); skipped")
        return
    tree, store = work / "small-tree", work / "small-store"
    names = make_small_tree(tree)
    store.mkdir()
    local = LocalBackend(store)
    backend = wrap_backend(local, WrapperConfig())
    print(f"Small files: {SMALL_FILES} x {SMALL_SIZE} B in {SMALL_FOLDERS} folders, Local with "
          f"{local.pool.workers} worker processes vs rclone copy ({REPEAT} rounds, interleaved; round 1 of "
          "put_many includes starting the workers)")  # fmt: skip
    ratios: dict[str, list[float]] = {"put": [], "get": []}
    for round_number in range(REPEAT):
        times = small_round(backend, work, names, round_number)
        for phase in ratios:
            ratios[phase].append(times[f"rclone {phase}"] / times[phase])
        print(f"  round {round_number + 1}: put_many {times['put']:6.2f} s, rclone copy up "
              f"{times['rclone put']:6.2f} s ({ratios['put'][-1]:4.2f}x rclone's throughput); get_many "
              f"{times['get']:6.2f} s, rclone copy down {times['rclone get']:6.2f} s ({ratios['get'][-1]:4.2f}x); "
              f"then flush (syncfs) {times['flush']:5.2f} s")  # fmt: skip
    for phase, values in ratios.items():
        print(f"  {phase}: median throughput {statistics.median(values):4.2f}x rclone copy's (target >= 1)")
    backend.close()
    shutil.rmtree(store)
    shutil.rmtree(tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: the temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is shown (default 3)")
    parser.add_argument("--only", choices=("local", "webdav", "hub", "small"), action="append", help="run only these")
    options = parser.parse_args()
    global REPEAT
    REPEAT = max(1, options.repeat)
    size = options.size * MIB
    with tempfile.TemporaryDirectory(prefix="oaiod-storage-bench-", dir=options.dir) as folder:
        work = Path(folder)
        source = work / "source.bin"
        if options.only != ["small"]:
            make_file(source, size)
            print(f"file: {options.size} MiB in {work}, best of {REPEAT} runs each")
        benches = (("local", bench_local), ("webdav", bench_webdav), ("hub", bench_hub), ("small", bench_small))
        for name, bench in benches:
            if not options.only or name in options.only:
                bench(work, source, size)


if __name__ == "__main__":
    main()
