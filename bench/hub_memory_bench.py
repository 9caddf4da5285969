"""What large ``register/`` bodies cost the hub in memory, printed (no asserts): ``python bench/hub_memory_bench.py``.

Against ``oaiod hub serve`` in its own process on loopback (SQLite): the hub's resident memory (``VmRSS``) and its
peak (``VmHWM``) before and after

* one ``register/`` of a real 100,000-file folder as the daemon registers it (``_file_paths`` and its ``_oaiod``
  manifest: ~19 MiB), which must be accepted; then ``--concurrent`` (4) such requests at once, from as many users;
* the same with an object listing as many files as the hub accepts (``MAX_FILE_PATHS``),
* and with one listing ``--paths`` files (1,000,000 by default: ~14 MiB of JSON; refused).

Each request's status is printed: a body beyond the hub's bounds is refused (413), one that waits too long for a
slot among the large bodies being read gets 429. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "storage"))

import requests  # noqa: E402
import storage_servers as servers  # noqa: E402

from oaiod import jsoncodec  # noqa: E402
from oaiod.engine.manifest import build_manifest  # noqa: E402
from oaiod.model import MAX_FILE_PATHS, context_encode, now_stamp, object_id  # noqa: E402

PASSWORD = "bench-password-not-secret"
MIB = 1024 * 1024


def start_hub(data_dir: Path, users: list[str]) -> tuple[subprocess.Popen[str], str]:
    oaiod = [sys.executable, "-c", "from oaiod.cli import main; main()"]
    for user in users:
        subprocess.run([*oaiod, "hub", "user", "add", user, "--data-dir", str(data_dir), "--password-stdin"],
                       input=PASSWORD, text=True, check=True, capture_output=True)  # fmt: skip
    port = servers.free_port()
    proc = subprocess.Popen([*oaiod, "hub", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    servers.wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/api/"


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak(pid: int) -> None:
    """Start ``VmHWM`` again from the current RSS (Linux ≥ 4.0), so each step's peak is its own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def session(url: str, user: str) -> requests.Session:
    http = requests.Session()
    http.headers.update(context_encode(user, "bench", "oaiod"))
    http.get(url + "login/", timeout=30)
    http.headers["X-CSRFToken"] = http.cookies["csrftoken"]
    http.post(url + "login/", json={"username": user, "password": PASSWORD}, timeout=30).raise_for_status()
    return http


def many_paths_body(user: str, count: int) -> bytes:
    """An object whose ``_file_paths`` lists ``count`` short paths (the attack of issue 9 §4)."""
    values = {"_name": "many", "_file_paths": [f"d{number % 1000}/f{number}" for number in range(count)]}
    return object_body(user, values)


def folder_body(user: str, count: int) -> bytes:
    """A real folder of ``count`` files as the daemon registers it: paths 1–5 folders deep, and the manifest."""
    pick = random.Random(1)
    paths = []
    for number in range(count):
        folders = "/".join(f"folder_{pick.randrange(300)}" for _ in range(pick.randint(1, 5)))
        paths.append(f"{folders}/file_{number}.{pick.choice(['py', 'txt', 'jpeg', 'md'])}")
    stamp = now_stamp()
    files = {path: [pick.randrange(10**7), 1_700_000_000_123_456_789, f"{pick.getrandbits(256):064x}", False]
             for path in paths}  # fmt: skip
    values = {"_name": "folder", "_file_paths": paths, "_oaiod": build_manifest("folder", stamp, files)}
    return object_body(user, values, stamp)


def object_body(user: str, values: dict[str, Any], stamp: str = "") -> bytes:
    stamp = stamp or now_stamp()
    oaio_id = object_id(user, "bench", "oaiod", stamp, values)
    obj = {"oaio_id": oaio_id, "client_stamp": stamp, "server_stamp": "", "client_values": values,
           "server_values": {}, "csh_id": "Hub", "csh_access_right": "", "username": user, "device_id": "bench",
           "app_id": "oaiod"}  # fmt: skip
    return jsoncodec.dumps(obj)


def post_all(url: str, pid: int, label: str, bodies: dict[str, bytes]) -> None:
    sessions = {user: session(url, user) for user in bodies}
    statuses: dict[str, int] = {}
    reset_peak(pid)
    before, _ = memory(pid)

    def post(user: str) -> None:
        headers = {"Content-Type": "application/json"}
        answer = sessions[user].post(url + "register/", data=bodies[user], headers=headers, timeout=600)
        statuses[user] = answer.status_code

    threads = [threading.Thread(target=post, args=(user,)) for user in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after, peak = memory(pid)
    size = sum(map(len, bodies.values())) / len(bodies) / MIB
    print(f"  {label:<40} {len(bodies)} x {size:5.1f} MiB  RSS {before:6.0f} -> {after:6.0f} MiB, "
          f"peak {peak:6.0f} MiB  answers {sorted(statuses.values())}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", type=int, default=1_000_000, help="files listed by the hostile request")
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--folder", type=int, default=100_000, help="files of the real folder")
    options = parser.parse_args()
    users = [f"user{number}" for number in range(options.concurrent)]
    shapes = {
        f"real {options.folder}-file folder": lambda user: folder_body(user, options.folder),
        f"{MAX_FILE_PATHS}-path register/ (the limit)": lambda user: many_paths_body(user, MAX_FILE_PATHS),
        f"{options.paths}-path register/": lambda user: many_paths_body(user, options.paths),
    }
    with tempfile.TemporaryDirectory(prefix="oaiod-hub-memory-bench-") as folder:
        proc, url = start_hub(Path(folder) / "hub-data", users)
        try:
            print(f"oaiod hub (pid {proc.pid}) at start: RSS {memory(proc.pid)[0]:.0f} MiB")
            for label, make in shapes.items():
                post_all(url, proc.pid, f"one {label}", {users[0]: make(users[0])})
                post_all(url, proc.pid, f"{options.concurrent} at once", {user: make(user) for user in users})
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
