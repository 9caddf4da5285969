"""Requests per second and per-request overhead of oaiod.http against plain ``requests``, over loopback.

Targets: a minimal threaded HTTP server answering a small JSON body (isolates the layer's own cost), and with
``--hub`` an embedded oaiod hub (``GET current_stamp/`` with a logged-in session, as a sync cycle would).
Prints numbers only; run it on a quiet machine and compare runs, not absolute values::

    python bench/http_overhead.py [-n 2000] [--hub] [--debug-log]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oaiod.http import NO_RETRY, HttpClient, OaioSessionAuth
from oaiod.secrets import Secret
from tests.httpfixtures import Reply, ScriptedServer


def measure(name: str, call: Callable[[], object], count: int) -> float:
    for _ in range(min(50, count)):  # warm the connection pool and caches
        call()
    samples = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    cpu = (time.process_time() - cpu_start) / count  # client and (in-process) server CPU per request
    mean = total / count
    p99 = sorted(samples)[int(0.99 * (count - 1))]
    median = statistics.median(samples)
    print(f"{name:<34} {count / total:9.0f} req/s   mean {mean * 1e6:8.1f} µs   median {median * 1e6:8.1f} µs   "
          f"p99 {p99 * 1e6:8.1f} µs   cpu {cpu * 1e6:7.1f} µs")  # fmt: skip
    return mean


def bench_plain_server(count: int, rounds: int = 3) -> None:
    server = ScriptedServer()
    server.on("GET", "/ping", Reply(200, {"current_stamp": "20250101000000000000"}))
    try:
        session = requests.Session()
        url = server.url + "ping"
        client = HttpClient(server.url, retry=NO_RETRY)
        raws, layers = [], []
        for round_ in range(1, rounds + 1):  # alternate, so that warm-up and machine noise hit both alike
            raws.append(
                measure(f"[{round_}] raw requests GET+json", lambda: session.get(url, timeout=(10, 60)).json(), count)
            )
            layers.append(measure(f"[{round_}] oaiod.http get_json", lambda: client.get_json("ping"), count))
            server.seen.clear()
        raw, layer = statistics.median(raws), statistics.median(layers)
        print(f"{'overhead of the layer (median)':<34} {(layer - raw) * 1e6:+9.1f} µs per request "
              f"({(layer / raw - 1) * 100:+.1f} %)")  # fmt: skip
        print(f"{'timings kept':<34} {len(client.timings)} (bounded deque)")
    finally:
        server.close()


def bench_hub(count: int) -> None:
    from oaiod.hub.server import HubServer
    from oaiod.hub.service import HubService
    from oaiod.hub.settings import HubSettings
    from oaiod.server_api import OaioServerApi

    with tempfile.TemporaryDirectory() as data_dir:
        settings = HubSettings(data_dir=Path(data_dir), port=0)
        HubService.open(settings).add_user("bench", "bench-password-1")
        with HubServer(settings) as hub:
            base = f"http://{hub.host}/api/"
            session = requests.Session()
            session.get(base + "login/")
            token = session.cookies["csrftoken"]
            session.post(base + "login/", json={"username": "bench", "password": "bench-password-1"},
                         headers={"X-CSRFToken": token})  # fmt: skip
            raw = measure(
                "hub: raw requests current_stamp/", lambda: session.get(base + "current_stamp/").json(), count
            )
            auth = OaioSessionAuth("bench", Secret("bench-password-1"))
            client = HttpClient(base, auth=auth, retry=NO_RETRY)
            layer = measure("hub: oaiod.http current_stamp/", lambda: client.get_json("current_stamp/"), count)
            api = OaioServerApi(hub.host, "bench", "bench-password-1", device_id="bench", app_id="bench")
            full = measure("hub: OaioServerApi.current_stamp", api.current_stamp, count)
            print(f"{'hub: layer overhead':<34} {(layer - raw) * 1e6:+9.1f} µs   "
                  f"server_api on top {(full - layer) * 1e6:+9.1f} µs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--hub", action="store_true", help="also measure against an embedded oaiod hub")
    parser.add_argument("--debug-log", action="store_true", help="with the curl DEBUG log on (to /dev/null)")
    args = parser.parse_args()
    if args.debug_log:
        handler = logging.FileHandler("/dev/null")
        logging.getLogger("oaiod.http").addHandler(handler)
        logging.getLogger("oaiod.http").setLevel(logging.DEBUG)
    bench_plain_server(args.count)
    if args.hub:
        bench_hub(max(1, args.count // 4))


if __name__ == "__main__":
    main()
