"""Cost of big values, printed (no asserts): ``python bench/values_bench.py [--files N] [--rounds N]``.

An object whose values hold a folder of N files (default 10,000): ``_file_paths`` and oaiod's ``_oaiod`` manifest,
≈1.4 MB of JSON, as the engine builds them. Timed, best and median of ``--rounds``:

* ``OaioServerApi.upload`` of a new version against a real hub on loopback (SQLite): the whole route, client
  encoding, hub decoding and validation, two database writes, the answer and the client's validation of it;
* ``OaioServerApi.stampz()``: the full object listing with that one object (both values hold the manifest);
* ``validate_object_dict`` of the object, ``validate_file_paths`` of its paths, and the JSON encoding and decoding
  of its values with the stdlib and with :mod:`oaiod.jsoncodec` (when present).

Each line also counts the garbage collector's full collections meanwhile (each walks the whole heap: ~80 ms
here with a hub in the process); ``--gc-freeze`` moves the start-up heap out of their reach first.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oaiod.hub.server import HubServer
from oaiod.hub.settings import HubSettings
from oaiod.model import OaiObject, now_stamp, object_id, validate_file_paths, validate_object_dict
from oaiod.server_api import OaioServerApi

PASSWORD = "bench-password-1"


def folder_values(count: int, stamp: str) -> dict[str, Any]:
    """Values as the engine writes them for a folder of ``count`` files (see ``oaiod.engine.manifest``)."""
    paths = [f"d{number // 100:04d}/f{number:06d}.dat" for number in range(count)]
    mtime = time.time_ns()
    files = {
        path: [4096, mtime + number, hashlib.sha256(path.encode()).hexdigest(), False]
        for number, path in enumerate(paths)
    }
    manifest = {"v": 1, "kind": "folder", "stamp": stamp, "files": files}
    return {"_root_path": "{usr}/bench", "_file_paths": paths, "_oaiod": manifest}


class FullCollections:
    """Counts the garbage collector's full (generation 2) collections and their time: each walks the whole heap."""

    def __init__(self) -> None:
        self.count, self.seconds, self._started = 0, 0.0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started

    def take(self) -> tuple[int, float]:
        taken = (self.count, self.seconds)
        self.count, self.seconds = 0, 0.0
        return taken


COLLECTIONS = FullCollections()


def report(name: str, action: Callable[[], object], rounds: int) -> None:
    samples = []
    COLLECTIONS.take()
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    count, seconds = COLLECTIONS.take()
    print(f"{name:<44} best {min(samples) * 1e3:8.2f} ms   median {statistics.median(samples) * 1e3:8.2f} ms   "
          f"full GCs {count} ({seconds * 1e3:.0f} ms)")  # fmt: skip


def bench_local(count: int, rounds: int) -> None:
    stamp = now_stamp()
    values = folder_values(count, stamp)
    wire = OaiObject(
        oaio_id=object_id("bench", "a", "oaiod", stamp, values), client_stamp=stamp, client_values=values,
        server_values=values, csh_id="Local", username="bench", device_id="a", app_id="oaiod",
        csh_access_right="C",
    ).to_dict()  # fmt: skip
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
    print(f"values of {count:,} files: {len(encoded):,} bytes of JSON")
    report("validate_object_dict (both values)", lambda: validate_object_dict(wire), rounds)
    report(f"validate_file_paths ({count:,} paths)", lambda: validate_file_paths(values["_file_paths"]), rounds)
    report("stdlib json.dumps", lambda: json.dumps(values, ensure_ascii=False, separators=(",", ":")), rounds)
    report("stdlib json.loads", lambda: json.loads(encoded), rounds)
    try:
        from oaiod import jsoncodec
    except ImportError:
        return
    report("jsoncodec.dumps", lambda: jsoncodec.dumps(values), rounds)
    report("jsoncodec.loads", lambda: jsoncodec.loads(encoded), rounds)


def bench_hub(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="oaiod-values-bench-") as folder:
        hub = HubServer(HubSettings(data_dir=Path(folder) / "hub", port=0, body_limit=256 * 2**20))
        hub.start()
        try:
            assert hub.service is not None
            hub.service.add_user("bench", PASSWORD)
            api = OaioServerApi(hub.host, "bench", PASSWORD, device_id="a", app_id="oaiod")
            stamp = now_stamp()
            values = folder_values(count, stamp)
            current = api.register(
                OaiObject(object_id("bench", "a", "oaiod", stamp, values), stamp, client_values=values, csh_id="Local")
            )

            def upload() -> None:
                nonlocal current
                new_stamp = now_stamp()
                new_values = {**values, "_oaiod": {**values["_oaiod"], "stamp": new_stamp}}
                current = api.upload(
                    OaiObject(current.oaio_id, new_stamp, current.client_stamp, new_values, csh_id="Local")
                )

            report("hub upload/ (end to end)", upload, rounds)
            report("hub oaio_stampz/ (full listing, 1 object)", api.stampz, rounds)
            api.close()
        finally:
            hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files listed in the object's values")
    parser.add_argument("--rounds", type=int, default=7, help="repetitions of each measurement")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() the start-up heap before measuring")
    args = parser.parse_args()
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    bench_local(args.files, args.rounds)
    bench_hub(args.files, args.rounds)


if __name__ == "__main__":
    main()
