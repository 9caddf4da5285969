"""Power loss, not only ``kill -9`` (issue 10 §4): a device loses everything written since its last durability
barrier, restarts from what the disk then holds, and the invariants of design §8 still hold.

What is simulated: the engine's barriers are ``localfs.make_durable`` (one ``syncfs`` of the root's filesystem,
which also writes out the state database's WAL). At every barrier of one sync cycle the test takes an image of the
device's disk as it would survive a power cut right then: the synced folder as hard links (inodes, sizes and mtimes
exactly as on disk: the engine never writes a file in place, so a linked file cannot change afterwards) and the
state database's files as copies. One image, chosen by the seed, becomes the device's disk; a fresh engine starts
on it, syncs with the other device, and the oracle checks convergence, no loss, no resurrection and no debris.
A power cut cannot happen here, so the image is how it is simulated (the only stand-in in this file).

Covered: a cut before the cycle's first barrier (its scan, and a push, which writes no local file: the hub may hold
a version the device's index never recorded) and at each barrier of a pull (downloads durable but not renamed,
renamed but not indexed, trash moves), with the user's own writes durable before the cycle. Not covered: a
cut between barriers that keeps *part* of what followed (each image is exactly a barrier's state; ``kill -9``
tests cover "everything kept"), torn writes inside one file, and the hub's or storage's own power loss.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from oaiod.daemon.wiring import remove_stale_temp_files
from oaiod.engine import localfs
from tests.engine.conftest import Device, converge, tree, write

pytestmark = pytest.mark.integration

SEEDS = int(os.environ.get("OAIOD_POWER_LOSS_SEEDS", "24"))
FOLDERS = ["", "docs", "docs/deep", "photos"]


def _image(device: Device, where: Path) -> None:
    """The device's disk as a power cut now would leave it (see the module docstring)."""
    shutil.copytree(device.root, where / "root", copy_function=os.link, symlinks=True)
    state = device.engine.settings.state_dir
    (where / "state").mkdir()
    for path in Path(state).iterdir():
        if path.is_file() and not path.name.endswith("-shm"):  # the shm index is rebuilt from db and wal
            shutil.copy2(path, where / "state" / path.name)


def _restore(device: Device, image: Path) -> None:
    shutil.rmtree(device.root)
    shutil.copytree(image / "root", device.root, copy_function=os.link, symlinks=True)
    state = Path(device.engine.settings.state_dir)
    shutil.rmtree(state)
    shutil.copytree(image / "state", state)


@contextmanager
def barrier_images(device: Device, base: Path) -> Iterator[list[Path]]:
    """Take an image of ``device`` after each of its durability barriers while the block runs."""
    images: list[Path] = []
    real: Callable[..., None] = localfs.make_durable

    def durable_then_image(root: Path, paths: Any) -> None:
        real(root, paths)
        if Path(root) == device.root or device.root in Path(root).parents:
            where = base / f"image-{len(images)}"
            where.mkdir(parents=True)
            _image(device, where)
            images.append(where)

    localfs.make_durable = durable_then_image  # type: ignore[assignment]
    try:
        yield images
    finally:
        localfs.make_durable = real  # type: ignore[assignment]


class User:
    """One person's edits on one device, remembered for the oracle: the newest content per path, and deletions."""

    def __init__(self, device: Device, rng: random.Random, tag: str) -> None:
        self.device, self.rng, self.tag = device, rng, tag
        self.latest: dict[str, bytes] = {}
        self.deleted: set[str] = set()
        self.count = 0

    def content(self) -> bytes:
        self.count += 1
        size = self.rng.choice([0, 5, 300, 70_000])
        return f"{self.tag}-{self.count}:".encode() + self.rng.randbytes(size)

    def files(self) -> list[str]:
        return sorted(tree(self.device.root))

    def act(self) -> None:
        existing = self.files()
        kind = self.rng.choice(["create", "edit", "delete", "rename"] if existing else ["create"])
        if kind == "create":
            folder = self.rng.choice(FOLDERS)
            path = f"{folder}/{self.tag}-new{self.count}.bin".lstrip("/")
            self._write(path)
        elif kind == "edit":
            self._write(self.rng.choice(existing))
        elif kind == "delete":
            path = self.rng.choice(existing)
            (self.device.root / path).unlink()
            self.latest.pop(path, None)
            self.deleted.add(path)
        else:
            source = self.rng.choice(existing)
            target = f"{self.rng.choice(FOLDERS)}/{self.tag}-moved{self.count}-{Path(source).name}".lstrip("/")
            (self.device.root / target).parent.mkdir(parents=True, exist_ok=True)
            data = (self.device.root / source).read_bytes()
            os.rename(self.device.root / source, self.device.root / target)
            self.latest.pop(source, None)
            self.deleted.add(source)
            self.latest[target] = data
            self.count += 1

    def _write(self, path: str) -> None:
        data = self.content()
        write(self.device.root / path, data)
        self.latest[path] = data
        self.deleted.discard(path)


def _everything(device: Device) -> list[bytes]:
    """Contents in the device's synced folder and its trash."""
    found = list(tree(device.root).values())
    trash = device.root / ".oaiod" / "trash"
    if trash.exists():
        found += [p.read_bytes() for p in trash.rglob("*") if p.is_file()]
    return found


def _check(seed: int, a: Device, b: Device, users: list[User], base: dict[str, bytes]) -> None:
    final_a, final_b = tree(a.root), tree(b.root)
    assert final_a == final_b, f"seed {seed}: not converged"
    kept = set(_everything(a)) | set(_everything(b))
    for user in users:
        for path, data in user.latest.items():
            assert data in kept, f"seed {seed}: {user.tag}'s {path} ({data[:20]!r}) was lost"
    written_by = {path for user in users for path in user.latest}
    for user in users:
        for path in user.deleted - written_by:
            assert path not in final_a, f"seed {seed}: {path}, deleted by {user.tag}, came back"
    every_write = {data for user in users for data in user.latest.values()} | set(base.values())
    for path, data in final_a.items():
        if " (conflicted copy from " not in path:
            assert data in every_write or any(data == d for d in kept), f"seed {seed}: {path} holds unknown content"
    debris = [p for p in a.root.rglob(".oaiod-tmp-*") if ".oaiod/" not in p.as_posix().split(str(a.root), 1)[1]]
    assert not debris, f"seed {seed}: temp files left: {debris}"


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_power_cut_at_any_barrier_loses_nothing(make_device: Any, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    a, b = make_device("alice", "a"), make_device("alice", "b")
    base = {}
    for number in range(rng.randint(3, 12)):
        path = f"{rng.choice(FOLDERS)}/base{number}.bin".lstrip("/")
        base[path] = f"base-{number}:".encode() + rng.randbytes(rng.choice([0, 10, 5000]))
        write(a.root / path, base[path])
    converge(a, b)
    users = [User(a, rng, "a"), User(b, rng, "b")]
    for _ in range(rng.randint(2, 8)):
        users[1].act()
    b.sync()  # b's changes are on the hub before a's cycle
    for _ in range(rng.randint(0, 8)):
        users[0].act()
    os.sync()  # the users' own writes are durable before the cut
    before = tmp_path / "images" / "before"
    before.mkdir(parents=True)
    _image(a, before)  # a cut before the first barrier: during the scan, or a push that needs none

    with barrier_images(a, tmp_path / "images") as images:
        a.sync()
    chosen = rng.choice([before, *images])
    a.engine.close()
    a.engine.repo.close()
    _restore(a, chosen)
    survivor = make_device("alice", "a")  # a fresh engine on the disk the cut left
    remove_stale_temp_files(survivor.engine.roots(), time.time())  # as the daemon does at start
    users[0].device = survivor
    converge(survivor, b, rounds=3)
    _check(seed, survivor, b, users, base)
