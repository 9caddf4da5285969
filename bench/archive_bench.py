"""Folder zips of the hub, printed (no asserts): ``python bench/archive_bench.py [--large N] [--small N]``.

A hub in this process on loopback (SQLite, blobs in its data folder), one folder object of ``--large`` files of
8 MiB and ``--small`` files of 1 KiB (random bytes). Prints the time from the request to ``prepared`` (polled
every 50 ms), the archive's size beside the content's and the size bound the disk limit counted, and the time
of its download. Then the cost of one password check of a share link (the hub's scrypt). Noisy on a shared
machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oaiod.hub.passwords import hash_password, verify_password  # noqa: E402
from oaiod.hub.server import HubServer  # noqa: E402
from oaiod.hub.settings import HubSettings  # noqa: E402
from tests.conftest import HubSession  # noqa: E402
from tests.hub.blobhelpers import put_blob, put_large  # noqa: E402
from tests.hub.objects import new_object  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=32, help="files of 8 MiB")
    parser.add_argument("--small", type=int, default=2000, help="files of 1 KiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        hub = HubServer(HubSettings(data_dir=Path(folder) / "hub", port=0)).start()
        try:
            assert hub.service is not None
            hub.service.add_user("bob", "bench password")
            bob = HubSession(hub, "bob")  # type: ignore[arg-type]
            bob.login("bench password")
            files = {f"large/{n}.bin": 8 << 20 for n in range(args.large)}
            files |= {f"small/{n // 100}/{n}.txt": 1024 for n in range(args.small)}
            obj = new_object("bob", "bench", _file_paths=sorted(files))
            started = time.perf_counter()
            for path, size in files.items():
                name = f"{obj['oaio_id']}/{obj['client_stamp']}/{path}"
                (put_large if size > 65536 else put_blob)(bob, name, os.urandom(size))
            print(
                f"upload of {len(files)} files ({sum(files.values()) >> 20} MiB): {time.perf_counter() - started:.1f} s"
            )
            assert bob.post("register/", json=obj).ok
            started = time.perf_counter()
            status = bob.post("hub/archives/", json={"oaio_id": obj["oaio_id"]}).json()
            bound = status["size"]
            while status["status"] == "preparing":
                time.sleep(0.05)
                status = bob.get(f"hub/archives/{status['id']}").json()
            prepared = time.perf_counter() - started
            content = sum(files.values())
            print(
                f"prepared ({status['status']}) in {prepared:.2f} s: {content / prepared / 2**20:.0f} MiB/s of content"
            )
            started = time.perf_counter()
            answer = bob.get(f"hub/archives/{status['id']}/download")
            took = time.perf_counter() - started
            print(
                f"zip {len(answer.content)} bytes for {content} bytes of content "
                f"(+{(len(answer.content) - content) / len(files):.0f} bytes a file); bound counted {bound}"
            )
            print(f"download: {took:.2f} s, {len(answer.content) / took / 2**20:.0f} MiB/s")
        finally:
            hub.stop()
    stored = hash_password("link password")
    started = time.perf_counter()
    for _ in range(10):
        verify_password("wrong", stored)
    print(f"one link password check: {(time.perf_counter() - started) * 100:.0f} ms")


if __name__ == "__main__":
    main()
