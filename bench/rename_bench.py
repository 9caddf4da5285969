"""A renamed folder A → B, printed (no asserts): ``python bench/rename_bench.py [--files N] [--size BYTES]``.

Issue 13 §1's row: device A renames a folder of ``--files`` (default 2,000) × ``--size`` (default 16 KiB) files;
B's pull cycle is timed and the bytes B's storage backend brought in with ``get_many`` are counted, in three
modes: the engine as it is (the folder renamed whole), with folder renames off (``find_folder_moves`` made to find
none: each file copied locally) and with local copies off too (every file downloaded, as before issue 13), on Hub
storage (the daemon's wiring) and on Local storage. Target: < 1% of the folder's bytes.

Everything is real: a hub on loopback (SQLite), two engines, Hub storage through the API session.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oaiod.engine import localcopy, moves  # noqa: E402
from oaiod.engine.cycle import SyncEngine  # noqa: E402
from oaiod.engine.settings import EngineSettings  # noqa: E402
from oaiod.hub.server import HubServer  # noqa: E402
from oaiod.hub.settings import HubSettings  # noqa: E402
from oaiod.server_api import OaioServerApi  # noqa: E402
from oaiod.state import StateRepo  # noqa: E402
from oaiod.storage import open_backend  # noqa: E402
from oaiod.storage.base import Backend, Transfer, Transferred  # noqa: E402
from oaiod.storage.hub import HubBackend  # noqa: E402
from oaiod.storage.wrappers import WrapperConfig, wrap_backend  # noqa: E402

PASSWORD = "bench-password-1"
MODES = ("folder renamed", "files copied", "files downloaded")


class Counted:
    """The bytes every ``get_many`` of the backends an engine opened returned (a wrapper of the real backend's
    method: the calls go through unchanged)."""

    def __init__(self) -> None:
        self.bytes = 0

    def wrap(self, backend: Backend) -> Backend:
        inner = backend.get_many

        def get_many(items: list[Transfer], **kwargs: Any) -> list[Transferred]:
            results = inner(items, **kwargs)
            self.bytes += sum(got.size for got in results if got.error is None)
            return results

        backend.get_many = get_many  # type: ignore[method-assign]
        return backend


def device(hub: HubServer, base: Path, name: str, user: str, csh_id: str, counted: Counted) -> SyncEngine:
    api = OaioServerApi(hub.host, user, PASSWORD, device_id=name, app_id="oaiod")

    def opener(cid: str, args: dict[str, Any]) -> Backend:
        if cid == "Hub":
            return counted.wrap(wrap_backend(HubBackend.sharing(api.http, args), WrapperConfig()))
        return counted.wrap(open_backend(cid, args))

    home = base / user / name
    settings = EngineSettings(client_root=home / "root", device_id=name, state_dir=home / "state", username=user,
                              csh_id=csh_id, quiet_period=0.0, home=home, mass_delete_min=10**9)  # fmt: skip
    return SyncEngine(settings, StateRepo(settings.state_dir), api, opener)


def make_folder(folder: Path, count: int, size: int) -> None:
    past = time.time_ns() - 60_000_000_000
    folder.mkdir(parents=True)
    for number in range(count):
        path = folder / f"f{number:05d}.dat"
        path.write_bytes(os.urandom(size))
        os.utime(path, ns=(past, past))


def one_round(hub: HubServer, base: Path, csh_id: str, count: int, size: int, mode: str) -> tuple[float, int]:
    """B's seconds and bytes downloaded for A's rename of a folder of ``count`` × ``size`` bytes."""
    user = f"u{len(list(base.iterdir()))}"
    assert hub.service is not None
    hub.service.add_user(user, PASSWORD)
    counted = Counted()
    a, b = device(hub, base, "a", user, csh_id, counted), device(hub, base, "b", user, csh_id, counted)
    make_folder(a.settings.client_root / "album", count, size)
    for engine in (a, b, a, b):
        engine.rescan()
        engine.sync_cycle()
    (a.settings.client_root / "album").rename(a.settings.client_root / "album renamed")
    a.rescan()
    a.sync_cycle()
    counted.bytes = 0
    found, paired = localcopy.copy_from_local, moves.find_folder_moves
    if mode != MODES[0]:
        moves.find_folder_moves = lambda _leaving, _arriving, _remote: []  # type: ignore[assignment]
    if mode == MODES[2]:
        localcopy.copy_from_local = lambda _repo, _wanted: {}  # type: ignore[assignment]
    try:
        b.rescan()
        started = time.perf_counter()
        report = b.sync_cycle()
        seconds = time.perf_counter() - started
    finally:
        localcopy.copy_from_local, moves.find_folder_moves = found, paired  # type: ignore[assignment]
    assert report.errors == [] and (b.settings.client_root / "album renamed").is_dir(), report
    for engine in (a, b):
        engine.close()
        engine.api.close()  # type: ignore[attr-defined]
    return seconds, counted.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = args.files * args.size
    with tempfile.TemporaryDirectory(prefix="oaiod-rename-bench-") as folder:
        base = Path(folder)
        (base / "users").mkdir()
        storage = base / "storage"
        storage.mkdir()
        hub = HubServer(HubSettings(data_dir=base / "hub", port=0, body_limit=256 * 2**20))
        hub.start()
        try:
            assert hub.service is not None
            hub.service.set_storage("Local", {"root_folder": str(storage)})  # "Hub": the hub's own blob store
            for csh_id in ("Hub", "Local"):
                for mode in MODES:
                    rounds = [one_round(hub, base / "users", csh_id, args.files, args.size, mode)
                              for _ in range(args.rounds)]  # fmt: skip
                    seconds = sorted(s for s, _ in rounds)[len(rounds) // 2]
                    got = max(b for _, b in rounds)
                    print(f"{csh_id} storage, rename of a folder of {args.files:,} × {args.size // 1024} KiB, "
                          f"{mode}: B's pull {seconds:.2f} s (median of {len(rounds)}), "
                          f"{got / 2**20:.2f} MiB downloaded = {100 * got / total:.2f}% of the folder")  # fmt: skip
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
