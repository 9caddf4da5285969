"""Storage throughput and memory, printed (no asserts): ``python bench/storage_bench.py [--size MIB]``.

* Local put and get of one file vs ``cp`` (target: at least 70 % of cp; our put also fsyncs, so cp + fsync
  is shown as well).
* WebDav upload and download over loopback vs ``curl -T`` / ``curl -o`` to the same wsgidav server, which runs
  in its own process so client and server do not share a GIL (target: within 2x of curl).
* Memory growth of this process during the WebDav transfers: the peak of Python's allocations (tracemalloc)
  and the peak RSS above the level before (sampled every 20 ms) (target: below 64 MiB).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: the temp folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is shown (default 3)")
    options = parser.parse_args()
    global REPEAT
    REPEAT = max(1, options.repeat)
    size = options.size * MIB
    with tempfile.TemporaryDirectory(prefix="oaiod-storage-bench-", dir=options.dir) as folder:
        work = Path(folder)
        source = work / "source.bin"
        make_file(source, size)
        print(f"file: {options.size} MiB in {work}, best of {REPEAT} runs each")
        bench_local(work, source, size)
        bench_webdav(work, source, size)


if __name__ == "__main__":
    main()
