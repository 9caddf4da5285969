"""Large-file throughput of the hub's blob store on S3, printed (no asserts): ``python bench/hub_s3_bench.py
[--size MIB]`` (default 256).

Three ``oaiod hub serve`` processes on loopback, each with its own SQLite and one user; a moto S3 server in its
own process (or MinIO at ``OAIOD_TEST_S3_URL`` with ``OAIOD_TEST_S3_ACCESS_KEY``/``_SECRET_KEY``):

* local — content in the hub's data folder (today's default);
* s3, streamed — content in the bucket, every byte through the hub both ways;
* s3, direct — ``--s3-direct``: the Hub backend uploads in parts and downloads on pre-signed URLs of the bucket;
  the hub only reads each upload back once at finish to verify its sha256.

For each: the Hub backend's ``put_file`` and ``get_file`` of one file (best of 3), and the hub process's CPU
seconds during each. moto buffers whole bodies in Python, so the bucket's own speed bounds the S3 rows on this
machine; the CPU column says what the hub spent, which is what direct transfers save it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "storage"))

import storage_servers as servers  # noqa: E402

from oaiod.storage.hub import HubBackend  # noqa: E402

MIB = 1024 * 1024
USER, PASSWORD = "bench", "bench-password-123"


def hub_process(data_dir: Path, store: list[str]) -> tuple[subprocess.Popen[str], str]:
    oaiod = [sys.executable, "-c", "from oaiod.cli import main; main()"]
    subprocess.run([*oaiod, "hub", "user", "add", USER, "--data-dir", str(data_dir), "--password-stdin"],
                   input=PASSWORD, text=True, check=True, capture_output=True)  # fmt: skip
    port = servers.free_port()
    proc = subprocess.Popen([*oaiod, "hub", "serve", "--data-dir", str(data_dir), "--port", str(port), *store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    servers.wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/api/"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best_of(
    action: Callable[[], object], pid: int, before: Callable[[], object] = lambda: None, repeat: int = 3
) -> tuple[float, float]:
    """The best wall time of ``repeat`` runs (``before`` each, untimed), and the hub's CPU seconds in that run."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        before()
        cpu, started = cpu_seconds(pid), time.perf_counter()
        action()
        wall, used = time.perf_counter() - started, cpu_seconds(pid) - cpu
        best = min(best, (wall, used))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of the file (default 256)")
    size = parser.parse_args().size * MIB
    with tempfile.TemporaryDirectory(prefix="hub-s3-bench-") as folder:
        work = Path(folder)
        url = os.environ.get("OAIOD_TEST_S3_URL", "")
        keys = (os.environ.get("OAIOD_TEST_S3_ACCESS_KEY", ""), os.environ.get("OAIOD_TEST_S3_SECRET_KEY", ""))
        moto = None
        if not url:
            moto = servers.start_moto(work / "moto.log")
            url, keys = moto.url, (moto.access_key_id, moto.secret_access_key)
        credentials = work / "credentials"
        credentials.write_text(f"[default]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n")
        credentials.chmod(0o600)
        import boto3

        bucket = f"bench-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=keys[0],
                     aws_secret_access_key=keys[1]).create_bucket(Bucket=bucket)  # fmt: skip
        s3 = ["--blob-store", "s3", "--s3-bucket", bucket, "--s3-endpoint", url,
              "--s3-credentials-file", str(credentials)]  # fmt: skip
        source = work / "source"
        with open(source, "wb") as file:
            for _ in range(size // MIB):
                file.write(os.urandom(MIB))
        print(f"{size // MIB} MiB through the Hub backend; best of 3; hub CPU seconds in that run")
        print(f"{'store':<16} {'put MiB/s':>10} {'hub CPU':>8} {'get MiB/s':>10} {'hub CPU':>8}")
        try:
            for name, options in (("local", []), ("s3 streamed", [*s3, "--s3-prefix", "streamed"]),
                                  ("s3 direct", [*s3, "--s3-prefix", "direct", "--s3-direct"])):  # fmt: skip
                proc, hub_url = hub_process(work / name.replace(" ", "-"), options)
                try:
                    backend = HubBackend.from_args({"url": hub_url, "username": USER, "password": PASSWORD})
                    backend.put_bytes("bench/warm", b"x")  # the scrypt login stays out of the timings
                    # deleted before each put: content stored already would not go to the bucket again
                    put, put_cpu = best_of(
                        lambda b=backend: b.put_file("bench/big", source),
                        proc.pid,  # type: ignore[misc]
                        lambda b=backend: b.delete("bench/big"),
                    )  # type: ignore[misc]
                    get, get_cpu = best_of(lambda b=backend: b.get_file("bench/big", work / "back"), proc.pid)  # type: ignore[misc]
                    backend.close()
                finally:
                    proc.terminate()
                    proc.wait()
                print(f"{name:<16} {size / MIB / put:10.1f} {put_cpu:8.2f} {size / MIB / get:10.1f} {get_cpu:8.2f}")
        finally:
            if moto is not None:
                moto.stop()


if __name__ == "__main__":
    main()
