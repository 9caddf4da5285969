"""Block transfer on Hub storage, printed (no asserts): ``python bench/block_transfer.py [--size-mib 200]``.

Against ``oaiod hub serve`` in its own process on loopback (SQLite, blobs in its data folder), through a TCP proxy
that counts the bytes each way (HTTP headers and JSON included). A ``--size-mib`` random file goes up, then 4 KiB
are overwritten in its middle and the new version goes up (only its changed blocks) and comes back with the old
file as basis (only the blocks it lacks); the same new version moved whole (blocks off) is the reference.
Numbers are noisy on a shared machine: ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "storage"))

from storage_bench import HUB_PASSWORD, HUB_USER, start_hub_process  # noqa: E402

from oaiod.http import OaioSessionAuth  # noqa: E402
from oaiod.secrets import Secret  # noqa: E402
from oaiod.storage.base import Transfer  # noqa: E402
from oaiod.storage.hub import HubBackend  # noqa: E402

MIB = 1024 * 1024


class CountingProxy:
    """Forwards loopback TCP connections to ``port``, counting the bytes sent up (to the hub) and down."""

    def __init__(self, port: int) -> None:
        self.target, self.up, self.down = port, 0, 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/api/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(1 << 20):
                target.sendall(data)
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> tuple[int, int]:
        """Bytes up and down since the last call."""
        with self._lock:
            counted, self.up, self.down = (self.up, self.down), 0, 0
        return counted

    def close(self) -> None:
        self._sock.close()


def measure(proxy: CountingProxy, label: str, action: Callable[[], object]) -> None:
    proxy.take()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    up, down = proxy.take()
    print(f"  {label:<52} {seconds:7.2f} s   up {up / MIB:9.3f} MiB   down {down / MIB:9.3f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaiod-block-bench-") as folder:
        work = Path(folder)
        proc, url = start_hub_process(work / "hub-data")
        proxy = CountingProxy(int(url.rsplit(":", 1)[1].split("/")[0]))
        try:
            run(work, proxy, options.size_mib * MIB)
        finally:
            proxy.close()
            proc.terminate()
            proc.wait(10)


def run(work: Path, proxy: CountingProxy, size: int) -> None:
    backend = HubBackend(proxy.url, OaioSessionAuth(HUB_USER, Secret(HUB_PASSWORD)))
    try:
        old, new = work / "old.bin", work / "new.bin"
        with open(old, "wb") as file:
            for _ in range(size // MIB):
                file.write(os.urandom(MIB))
        data = old.read_bytes()
        new.write_bytes(data[: size // 2 + 123] + os.urandom(4096) + data[size // 2 + 123 + 4096 :])
        del data
        list(backend.list("nothing"))  # log in before counting
        print(f"Hub storage over loopback, one {size // MIB} MiB file, 4 KiB overwritten in its middle")
        measure(proxy, "first upload (all blocks)", lambda: backend.put_file("bench/v1", old))
        measure(proxy, "changed file up (changed blocks only)", lambda: backend.put_file("bench/v2", new))
        got = work / "got-blocks.bin"
        measure(proxy, "changed file down, old file as basis", lambda: _get(backend, "bench/v2", got, str(old)))
        assert got.read_bytes() == new.read_bytes(), "the rebuilt file differs"
        measure(proxy, "changed file down, no basis (assembled by the hub)",
                lambda: _get(backend, "bench/v2", work / "assembled.bin", None))  # fmt: skip
        backend.block_routes = False
        measure(proxy, "reference: changed file up whole", lambda: backend.put_file("bench/v3", new))
        measure(proxy, "reference: changed file down whole", lambda: _get(backend, "bench/v3", work / "w.bin", None))
    finally:
        backend.close()


def _get(backend: HubBackend, key: str, target: Path, basis: str | None) -> None:
    [got] = backend.get_many([Transfer(key, str(target), basis=basis)])
    if got.error is not None:
        raise got.error


if __name__ == "__main__":
    main()
