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
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: the temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is shown (default 3)")
    parser.add_argument("--only", choices=("local", "webdav", "hub"), action="append", help="run only these")
    options = parser.parse_args()
    global REPEAT
    REPEAT = max(1, options.repeat)
    size = options.size * MIB
    with tempfile.TemporaryDirectory(prefix="oaiod-storage-bench-", dir=options.dir) as folder:
        work = Path(folder)
        source = work / "source.bin"
        make_file(source, size)
        print(f"file: {options.size} MiB in {work}, best of {REPEAT} runs each")
        for name, bench in (("local", bench_local), ("webdav", bench_webdav), ("hub", bench_hub)):
            if not options.only or name in options.only:
                bench(work, source, size)


if __name__ == "__main__":
    main()
