"""``oaiod storage``: check a storage host's arguments with a round trip, and list its keys.

Arguments are given as ``key=value`` words, exactly the keys that ``csh_args/<csh_id>`` returns. Secrets only in
their ``<name>_env`` or ``<name>_file`` forms: an inline secret on a command line would show in ``ps`` and in the
shell history, so it is refused here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from oaiod.errors import ConfigError, OaiodError
from oaiod.model import now_stamp, storage_key
from oaiod.storage.base import Backend
from oaiod.storage.registry import open_backend
from oaiod.storage.wrappers import WrapperConfig

#: argument names that hold a secret inline, refused on a command line
INLINE_SECRETS = ("password", "secret_access_key", "access_key_id")
MIB = 1024 * 1024


def parse_pairs(words: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` words as a dict, and the words without ``=``; a repeated key or inline secret is refused."""
    args: dict[str, str] = {}
    rest: list[str] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            rest.append(word)
            continue
        if key in args:
            raise click.BadParameter(f"{key} is given twice", param_hint="ARGS")
        if key in INLINE_SECRETS:
            raise click.BadParameter(
                f"{key} must not be on a command line; give {key}_env=VARIABLE or {key}_file=PATH", param_hint="ARGS"
            )
        args[key] = value
    return args, rest


def open_from_cli(csh_id: str, args: dict[str, str]) -> Backend:
    try:
        return open_backend(csh_id, args, wrappers=WrapperConfig(attempts=3, backoff_base=0.5))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group("storage", context_settings={"help_option_names": ["-h", "--help"]})
def storage() -> None:
    """Check and inspect cloud storage hosts (Local, Hub, WebDav, S3, Rclone)."""


@dataclass
class Step:
    name: str
    seconds: float
    detail: str


class RoundTrip:
    """The steps of ``storage test`` on one backend under a scratch prefix; stops at the first failure."""

    def __init__(self, backend: Backend, folder: Path, size: int) -> None:
        self.backend = backend
        self.folder = folder
        self.size = size
        self.scratch = f"oaiod-storage-test-{now_stamp()}-{secrets.token_hex(3)}"
        self.steps: list[Step] = []

    def step(self, name: str, action: Callable[[], str | None], detail: str = "") -> None:
        """Time ``action``; its answer, else ``detail``, is what the report says of it."""
        started = time.monotonic()
        detail = action() or detail
        self.steps.append(Step(name, time.monotonic() - started, detail))

    def rate(self, seconds_of: str) -> str:
        seconds = next(step.seconds for step in reversed(self.steps) if step.name == seconds_of)
        return f"{self.size / MIB / max(seconds, 1e-9):.1f} MiB/s"

    def run(self) -> None:
        backend, folder = self.backend, self.folder
        small, unicode_key = f"{self.scratch}/small.txt", self._unicode_key()
        big, copied = f"{self.scratch}/big.bin", f"{self.scratch}/copy/big.bin"
        big_file, digest = folder / "big.bin", write_random(folder / "big.bin", self.size)
        self.step("put small", lambda: backend.put_bytes(small, b"oaiod storage test\n"), "19 bytes")
        self.step("put non-ASCII key", lambda: backend.put_bytes(unicode_key, "ä ö ü 日本".encode()), unicode_key)
        self.step("put big", lambda: backend.put_file(big, big_file), f"{self.size / MIB:.1f} MiB")
        self.steps[-1].detail += f", {self.rate('put big')}"
        self.step("stat big", lambda: expect(backend.stat(big).size == self.size, "stat gives the wrong size"))
        expected = sorted([small, unicode_key, big])
        self.step("list", lambda: expect(sorted(i.key for i in backend.list(self.scratch)) == expected, "list"))
        how = "server-side" if backend.capabilities.server_side_copy else "through this machine"
        self.step("copy", lambda: backend.copy(big, copied), how)
        self.step("get copy", lambda: backend.get_file(copied, folder / "back.bin"))
        self.steps[-1].detail = f"{self.size / MIB:.1f} MiB, {self.rate('get copy')}"
        self.step("verify", lambda: expect(sha256_of(folder / "back.bin") == digest, "downloaded copy differs"))
        self.step("get non-ASCII key", lambda: expect(backend.get_bytes(unicode_key) == "ä ö ü 日本".encode(), "key"))
        self.step("delete", lambda: backend.delete(small) or expect(not backend.exists(small), "still there"))
        self.step("delete prefix", self.remove_scratch)

    def _unicode_key(self) -> str:
        stamp = now_stamp()
        return f"{self.scratch}/{storage_key(f'oaiod⫻storage﹫test⁄{stamp}', stamp, 'dir ä/ファイル.txt')}"

    def remove_scratch(self) -> str:
        self.backend.delete_prefix(self.scratch)
        return expect(not list(self.backend.list(self.scratch)), "objects left under the scratch prefix")


def expect(condition: bool, what: str) -> str:
    if not condition:
        raise AssertionError(what)
    return "ok"


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        for offset in range(0, size, MIB):
            chunk = os.urandom(min(MIB, size - offset))
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def report(console: Console, title: str, steps: list[Step]) -> None:
    table = Table(title=title)
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("detail")
    for step in steps:
        table.add_row(step.name, f"{step.seconds:.3f}", step.detail)
    console.print(table)


@storage.command("test")
@click.argument("csh_id")
@click.argument("args", nargs=-1)
@click.option("--size-mib", default=8, show_default=True, type=click.IntRange(1, 4096), help="Size of the big file.")
def test_command(csh_id: str, args: tuple[str, ...], size_mib: int) -> None:
    """Round-trip test objects through a storage host, timing each step."""
    pairs, rest = parse_pairs(args)
    if rest:
        raise click.BadParameter(f"expected key=value, got {rest[0]!r}", param_hint="ARGS")
    console = Console()
    backend = open_from_cli(csh_id, pairs)
    with tempfile.TemporaryDirectory(prefix="oaiod-storage-test-") as folder, backend:
        trip = RoundTrip(backend, Path(folder), size_mib * MIB)
        try:
            trip.run()
        except (OaiodError, AssertionError, OSError) as exc:
            report(console, f"{backend.describe()}: FAILED", trip.steps)
            try:
                trip.remove_scratch()
            except (OaiodError, AssertionError) as cleanup:
                console.print(f"could not remove the scratch prefix {trip.scratch}: {cleanup}")
            click.echo(f"storage test failed: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
    report(console, backend.describe(), trip.steps)
    click.echo(f"storage test passed: all {len(trip.steps)} steps")


@storage.command("ls")
@click.argument("csh_id")
@click.argument("args", nargs=-1)
@click.option("-l", "--long", "long_format", is_flag=True, help="Show sizes and modification times.")
def ls_command(csh_id: str, args: tuple[str, ...], long_format: bool) -> None:
    """List the keys on a storage host, under PREFIX if given."""
    pairs, rest = parse_pairs(args)
    if len(rest) > 1:
        raise click.BadParameter(f"only one PREFIX, got {', '.join(rest)}", param_hint="ARGS")
    backend = open_from_cli(csh_id, pairs)
    with backend:
        try:
            for info in backend.list(rest[0] if rest else ""):
                if long_format:
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime)) if info.mtime else "-"
                    click.echo(f"{info.size:>14}  {when}  {info.key}")
                else:
                    click.echo(info.key)
        except OaiodError as exc:
            click.echo(f"storage ls failed: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
