"""Sync engine numbers, printed (no asserts): ``python bench/engine_bench.py [--files N] [--small N]``.

* A sync cycle with nothing to do, with N indexed files (default 100,000): HTTP requests and time
  (target: ≤ 3 requests, < 100 ms).
* A full rescan of the N unchanged files vs ``find -printf '%s %T@'`` on the same tree (target: ≤ 3×).
* Initial sync of ``--small`` (default 10,000) × 4 KiB files A → B: A's upload cycle and B's download cycle, and
  ``rclone copy`` of the same tree to the same storage, in ``--rounds`` (default 5) rounds with a fresh user each,
  rclone before the engine in one round and after it in the next, an ``os.sync()`` before every timed phase;
  each round is printed, then the median engine / rclone ratios.
* A new version of a ``--version`` (default 10,000) file folder with one file changed, on Local and on Hub
  storage: seconds, the requests of the cycle by route and the bytes it sent (the unchanged files are carried with
  one ``copy_prefix``).

Everything is real: a hub on loopback (SQLite), Local storage in a temp folder, two engines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oaiod.engine.cycle import SyncEngine  # noqa: E402
from oaiod.engine.settings import EngineSettings  # noqa: E402
from oaiod.heap import freeze_startup_objects  # noqa: E402
from oaiod.hub.server import HubServer  # noqa: E402
from oaiod.hub.settings import HubSettings  # noqa: E402
from oaiod.server_api import OaioServerApi  # noqa: E402
from oaiod.state import StateRepo  # noqa: E402
from oaiod.storage import open_backend  # noqa: E402
from oaiod.storage.hub import HubBackend  # noqa: E402
from oaiod.storage.wrappers import WrapperConfig, wrap_backend  # noqa: E402

PASSWORD = "bench-password-1"


def make_tree(root: Path, count: int, size: int) -> None:
    """``count`` files of ``size`` bytes in folders of 100, mtimes in the past (no quiet period)."""
    past = time.time_ns() - 60_000_000_000
    block = os.urandom(size)
    for number in range(count):
        folder = root / f"d{number // 100:04d}"
        if number % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{number:06d}.dat"
        path.write_bytes(number.to_bytes(4, "big") + block[4:])
        os.utime(path, ns=(past, past))


def engine(hub: HubServer, base: Path, device: str, user: str = "bench") -> tuple[SyncEngine, OaioServerApi]:
    settings = EngineSettings(
        client_root=base / device / "root",
        device_id=device,
        state_dir=base / device / "state",
        username=user,
        csh_id="Local",
        quiet_period=0.0,
        home=base / device,
        mass_delete_min=10**9,
    )
    api = OaioServerApi(hub.host, user, PASSWORD, device_id=device, app_id="oaiod")
    return SyncEngine(settings, StateRepo(settings.state_dir), api, lambda c, a: open_backend(c, a)), api


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def bench_idle_and_rescan(hub: HubServer, base: Path, count: int) -> None:
    eng, api = engine(hub, base, "big")
    print(f"creating {count:,} files …", flush=True)
    make_tree(eng.settings.client_root, count, 64)
    seconds, report = timed(eng.sync_cycle)
    seconds2, report2 = timed(eng.sync_cycle)
    print(
        f"initial index + commit of {count:,} files: {seconds:.1f} s + {seconds2:.1f} s "
        f"(uploads {report.uploads + report2.uploads:,})"
    )
    eng.sync_cycle()  # our own commit comes back once
    samples = []
    for _ in range(5):
        api.http.reset_timings()
        seconds, _ = timed(eng.sync_cycle)
        samples.append((seconds, len(api.http.timings)))
    best = min(samples)
    print(
        f"no-op sync cycle with {count:,} indexed files: {best[1]} HTTP request(s), best {best[0] * 1000:.1f} ms "
        f"(median {sorted(s for s, _ in samples)[2] * 1000:.1f} ms)   target ≤ 3 requests, < 100 ms"
    )
    rescan = min(timed(eng.rescan)[0] for _ in range(3))
    find = min(
        timed(
            lambda: subprocess.run(
                ["find", str(eng.settings.client_root), "-printf", "%s %T@\n"], stdout=subprocess.DEVNULL, check=True
            )
        )[0]
        for _ in range(3)
    )
    print(
        f"full rescan of {count:,} unchanged files: {rescan:.2f} s vs find -printf {find:.2f} s "
        f"= {rescan / find:.1f}×   target ≤ 3×"
    )
    eng.close()
    api.close()


def rclone_copy(tree: Path, target: Path) -> tuple[float, float] | None:
    """Seconds ``rclone copy`` takes for ``tree``, and the seconds until its files are durable too (an
    ``os.sync()`` right after: the engine's cycles include their syncs); None when rclone is not installed."""
    rclone = shutil.which("rclone")
    if rclone is None:
        return None
    command = [rclone, "copy", str(tree), str(target)]
    os.sync()  # no dirty pages of an earlier phase written back on this one's time
    seconds, _ = timed(lambda: subprocess.run(command, check=True, capture_output=True))
    durable, _ = timed(os.sync)
    return seconds, seconds + durable


def synced_timed(action) -> tuple[float, object]:
    """:func:`timed` after an ``os.sync()``, so each phase starts with no dirty pages of the one before."""
    os.sync()
    return timed(action)


def initial_sync_round(
    hub: HubServer, base: Path, storage: Path, tree: Path, count: int, number: int
) -> tuple[float, float, tuple[float, float]]:
    """One round with a fresh user and fresh devices: A's upload cycle, B's download cycle and ``rclone copy`` of
    the same tree to the same storage (rclone first in even rounds, last in odd ones). Returns (up, down, rclone)
    seconds (rclone: plain and until durable; NaN when not installed)."""
    user = f"initial-{number}"
    assert hub.service is not None
    hub.service.add_user(user, PASSWORD)
    home = base / f"round-{number}"
    a, api_a = engine(hub, home, "a", user)
    b, api_b = engine(hub, home, "b", user)
    b.sync_cycle()
    a.sync_cycle()
    shutil.copytree(tree, a.settings.client_root / "tree")
    a.rescan()
    rclone = rclone_copy(tree, storage / f"rclone-{number}") if number % 2 == 0 else None
    up, _ = synced_timed(a.sync_cycle)
    down, report = synced_timed(b.sync_cycle)
    if number % 2:
        rclone = rclone_copy(tree, storage / f"rclone-{number}")
    assert getattr(report, "downloads", None) == count, report  # every file arrived: the timing is of a full sync
    for eng, api in ((a, api_a), (b, api_b)):
        eng.close()
        api.close()
    return up, down, rclone or (float("nan"), float("nan"))


def bench_initial_sync(hub: HubServer, base: Path, storage: Path, count: int, rounds: int) -> None:
    """A uploads, B downloads, rclone copies the same tree, in ``rounds`` interleaved rounds (this machine is shared
    and noisy: each round is printed, and the median ratios). The target compares with plain ``rclone copy``; the
    ratio with ``rclone copy`` + ``sync`` (durable, as the engine's cycles are) is printed too."""
    tree = base / "tree"
    make_tree(tree, count, 4096)
    megabytes = count * 4096 / 2**20
    ups, downs, durable = [], [], []
    for number in range(rounds):
        up, down, (rclone, rclone_durable) = initial_sync_round(hub, base, storage, tree, count, number)
        ups.append(rclone / up)
        downs.append(rclone / down)
        durable.append((rclone_durable / up, rclone_durable / down))
        print(
            f"round {number + 1}: initial sync of {count:,} × 4 KiB ({megabytes:.0f} MiB): A upload cycle {up:.2f} s "
            f"({count / up:,.0f} files/s), B download cycle {down:.2f} s ({count / down:,.0f} files/s), "
            f"rclone copy {rclone:.2f} s ({count / rclone:,.0f} files/s; with sync {rclone_durable:.2f} s); "
            f"engine / rclone: upload {rclone / up:.2f}, download {rclone / down:.2f}",
            flush=True,
        )
    if shutil.which("rclone") is None:
        print("rclone is not installed: no comparison")
        return
    print(
        f"initial sync, median of {rounds} round(s), engine / rclone throughput: upload {statistics.median(ups):.2f}, "
        f"download {statistics.median(downs):.2f}   target ≥ 1\n"
        f"  (engine / rclone copy + sync, both durable: upload {statistics.median(d[0] for d in durable):.2f}, "
        f"download {statistics.median(d[1] for d in durable):.2f})"
    )


def bench_new_version(hub: HubServer, base: Path, count: int, csh_id: str) -> None:
    """Commit ``count`` files to ``csh_id`` storage, change one, and time the cycle committing the new version."""
    user = f"version-{csh_id.lower()}"
    assert hub.service is not None
    hub.service.add_user(user, PASSWORD)
    hubs: list[HubBackend] = []
    api = OaioServerApi(hub.host, user, PASSWORD, device_id="v", app_id="oaiod")

    def opener(cid: str, args: dict) -> object:
        if cid != "Hub":
            return open_backend(cid, args)
        hubs.append(HubBackend.sharing(api.http, args))  # the daemon's wiring: Hub storage on the API session
        return wrap_backend(hubs[-1], WrapperConfig())

    home = base / user
    settings = EngineSettings(client_root=home / "root", device_id="v", state_dir=home / "state", username=user,
                              csh_id=csh_id, quiet_period=0.0, home=home, mass_delete_min=10**9)  # fmt: skip
    eng = SyncEngine(settings, StateRepo(settings.state_dir), api, opener)
    make_tree(settings.client_root, count, 64)
    first, _ = timed(eng.sync_cycle)
    eng.sync_cycle()  # our own commit comes back once
    samples = []
    for number in range(3):
        changed = settings.client_root / "d0000" / "f000000.dat"
        changed.write_bytes(os.urandom(64))
        past = time.time_ns() - 30_000_000_000 + number
        os.utime(changed, ns=(past, past))
        eng.rescan()
        clients = {id(client): client for client in [api.http] + [backend.http for backend in hubs]}.values()
        for client in clients:
            client.reset_timings()
        seconds, _ = timed(eng.sync_cycle)
        timings = [timing for client in clients for timing in client.timings]
        samples.append((seconds, len(timings), _routes(timings), sum(timing.bytes_sent for timing in timings)))
        eng.sync_cycle()
    best = min(samples)
    # every request of the cycle, to the API and to Hub storage
    requests = f", {best[1]} requests ({best[2]}), {best[3] / 1e6:.2f} MB sent" if csh_id == "Hub" else ""
    print(f"{csh_id} storage: first commit of {count:,} files {first:.1f} s; a new version with one file changed: "
          f"best {best[0]:.2f} s of {len(samples)}{requests}")  # fmt: skip
    eng.close()
    api.close()


def _routes(timings: list) -> str:
    """``route ×N S s`` of the requests, e.g. ``blobs/copy-prefix ×1 0.05 s, upload ×1 0.40 s``."""
    routes: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for timing in timings:
        parts = timing.url.split("/api/", 1)[-1].split("?")[0].split("/")
        route = parts[0] if parts[0] != "hub" else "/".join(parts[1:3])
        routes[route] += 1
        seconds[route] += timing.seconds
    return ", ".join(f"{route} ×{count} {seconds[route]:.2f} s" for route, count in sorted(routes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="indexed files for the no-op cycle and rescan")
    parser.add_argument("--small", type=int, default=10_000, help="4 KiB files for the initial sync")
    parser.add_argument("--version", type=int, default=10_000, help="files of the folder a new version commits")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the initial sync vs rclone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaiod-engine-bench-") as folder:
        base = Path(folder)
        storage = base / "storage"
        storage.mkdir()
        hub = HubServer(HubSettings(data_dir=base / "hub", port=0, body_limit=256 * 2**20))
        hub.start()
        freeze_startup_objects()  # as the daemon (and `oaiod hub serve`) does once start-up is done
        try:
            assert hub.service is not None
            hub.service.add_user("bench", PASSWORD)
            hub.service.set_storage("Local", {"root_folder": str(storage)})
            if args.files:
                bench_idle_and_rescan(hub, base, args.files)
            if args.small:
                bench_initial_sync(hub, base, storage, args.small, max(1, args.rounds))
            for csh_id in ("Local", "Hub") if args.version else ():
                bench_new_version(hub, base, args.version, csh_id)
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
