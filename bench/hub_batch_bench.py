"""Small files to and from the hub's blob store, printed (no asserts): ``python bench/hub_batch_bench.py``.

Against ``oaiod hub serve`` in its own process on loopback (SQLite, Hub storage):

* batch: ``HubBackend.put_many`` of 10,000 x 4 KiB files (``put-many/``, 1000 files per request), then
  ``get_many`` of them to new local files (``get-many/``);
* one file per call: the per-item default of :class:`~oaiod.storage.base.Backend` (``put_file``/``get_file`` on
  ``max_connections`` threads: createUpload inline + finish, start-download + download) on ``--old`` files (1,000
  by default), extrapolated to 10,000.

Every file has its own random content (nothing is deduplicated). Numbers are noisy on a shared machine: run it
on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "storage"))

from storage_bench import HUB_PASSWORD, HUB_USER, start_hub_process  # noqa: E402

from oaiod.secrets import Secret  # noqa: E402
from oaiod.storage.base import Backend, Transfer  # noqa: E402
from oaiod.storage.hub import HubBackend  # noqa: E402

FOLDERS = 50


def make_tree(root: Path, count: int, size: int) -> list[str]:
    """``count`` files of ``size`` random bytes in :data:`FOLDERS` folders; their relative paths."""
    names = []
    for number in range(count):
        name = f"d{number % FOLDERS:02}/f{number:05}.bin"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(size))
        names.append(name)
    return names


def timed(label: str, count: int, size: int, action: Callable[[], list], scale: int = 1) -> float:
    started = time.perf_counter()
    results = action()
    seconds = time.perf_counter() - started
    failed = [result for result in results if result.error is not None]
    extra = f" (x{scale} = {seconds * scale:.1f} s for {count * scale})" if scale > 1 else ""
    print(f"  {label:<44} {count:>6} files  {seconds:7.2f} s  {count / seconds:8.0f} files/s  "
          f"{count * size / seconds / 1e6:6.1f} MB/s{extra}{f'  FAILED: {len(failed)}' if failed else ''}")  # fmt: skip
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--old", type=int, default=1000, help="files for the one-file-per-call path")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaiod-hub-batch-bench-") as folder:
        work = Path(folder)
        proc, url = start_hub_process(work / "hub-data")
        try:
            run(work, url, options.count, options.size, options.old)
        finally:
            proc.terminate()
            proc.wait(10)


def run(work: Path, url: str, count: int, size: int, old: int) -> None:
    from oaiod.http import OaioSessionAuth

    backend = HubBackend(url, OaioSessionAuth(HUB_USER, Secret(HUB_PASSWORD)))
    try:
        print(f"Hub blob store over loopback (oaiod hub serve in its own process), {size}-byte files")
        batch = make_tree(work / "batch", count, size)
        puts = [Transfer(f"bench/batch/{name}", str(work / "batch" / name)) for name in batch]
        backend.http.reset_timings()
        timed("batch put_many (put-many/)", count, size, lambda: backend.put_many(puts))
        print(f"    {len(backend.http.timings)} requests")
        (work / "back").mkdir()
        for folder in {name.split("/")[0] for name in batch}:
            (work / "back" / folder).mkdir()
        gets = [Transfer(f"bench/batch/{name}", str(work / "back" / name)) for name in batch]
        backend.http.reset_timings()
        timed("batch get_many (get-many/)", count, size, lambda: backend.get_many(gets))
        print(f"    {len(backend.http.timings)} requests")

        single = make_tree(work / "single", old, size)
        puts = [Transfer(f"bench/single/{name}", str(work / "single" / name)) for name in single]
        scale = max(1, count // old)
        caps = backend.capabilities.max_connections
        timed(f"one file per call: put_file on {caps} threads", old, size,
              lambda: Backend.put_many(backend, puts), scale)  # fmt: skip
        (work / "back-single").mkdir()
        for folder in {name.split("/")[0] for name in single}:
            (work / "back-single" / folder).mkdir()
        gets = [Transfer(f"bench/single/{name}", str(work / "back-single" / name)) for name in single]
        timed(f"one file per call: get_file on {caps} threads", old, size,
              lambda: Backend.get_many(backend, gets), scale)  # fmt: skip
    finally:
        backend.close()


if __name__ == "__main__":
    main()
