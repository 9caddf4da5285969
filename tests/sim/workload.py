"""The seeded plan of a run — rounds of file operations and faults — and applying one operation to a device's
copy of the synced folder, recording in the :class:`~sim.oracle.Ledger` what it wrote, destroyed or moved.

A plan is data drawn from ``random.Random(seed)`` before anything runs, so a failing plan can be printed, run
again and shrunk by removing steps. Operations name paths, not files: one whose source is gone by the time it
runs (another device deleted it, a shrunk plan left out its creation) is skipped and says so.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sim.oracle import Ledger

DEVICES = ("alice-1", "alice-2", "alice-3", "bob-1")

_CAFE = "café"
FOLDERS = (
    "",
    "",
    "",
    "docs",
    "Docs",
    "d1",
    "ü-ñ",
    "项目/子",
    "a/b",
    "deep/l1/l2/l3/l4/l5/l6/l7",
)
NAMES = (
    "a.txt",
    "A.txt",
    "b.txt",
    "notes.md",
    "Notes.md",
    unicodedata.normalize("NFC", _CAFE) + ".txt",
    unicodedata.normalize("NFD", _CAFE) + ".txt",
    "日本語.txt",
    "x y.bin",
    "run.sh",
    "d1",
    "e",
    "long-" + "ŋ" * 110 + ".txt",  # 229 bytes: its conflicted copies and trash names must be shortened
)

#: operation kind -> weight
OP_WEIGHTS = {
    "write": 26,
    "append": 8,
    "truncate": 5,
    "delete": 10,
    "move": 10,
    "move-folder": 5,
    "delete-folder": 4,
    "chmod": 5,
    "rename-cycle": 4,
    "swap": 2,
    "twin-write": 6,
    "mkdir": 4,  # an empty folder (or a tree of them)
}

STORAGES = ("Local", "Hub")

#: names of the empty folders ``mkdir`` makes (under one of FOLDERS); ``d1`` and ``e`` are file names too
EMPTY_FOLDERS = ("empty", "Empty", "e", "d1", "new/inner")

#: fault kind -> weight; a fault starts before operation ``at`` of its round and ends with the round
FAULT_WEIGHTS = {
    "kill": 4,  # kill -9 of a daemon; restarted at the end of the round
    "kill-bounce": 3,  # kill -9 of a daemon and an immediate restart (a cycle cut anywhere)
    "pause": 3,  # SIGSTOP until the end of the round, then SIGCONT
    "offline": 3,  # the device's proxy drops everything
    "flaky": 4,  # the device's proxy delays, resets and answers 503
    "hub-kill": 2,  # kill -9 of the hub; restarted at the end of the round
    "hub-bounce": 3,  # kill -9 of the hub and an immediate restart (a commit cut anywhere)
    "hub-kill-at-commit": 3,  # kill -9 of the hub a few ms after the next commit reached it; restarted after the round
    "clock-jump": 3,  # the device's wall clock jumps by Fault.seconds (sim/faultshim.c); back to true time after
    "disk-full": 3,  # every write of the device's daemon to a file fails with ENOSPC until the round ends
}

#: how far a ``clock-jump`` moves the device's clock: within and beyond the spec's 69 s skew, both ways
CLOCK_JUMPS = (-3 * 86400.0, -3600.0, -50.0, 40.0, 7200.0, 2 * 86400.0)


@dataclass(frozen=True)
class Op:
    """One user action on ``device``'s copy of the synced folder; ``tag`` makes every written content unique."""

    kind: str
    device: str
    path: str
    dst: str = ""
    size: int = 0
    tag: str = ""
    pause: float = 0.0  #: seconds the user waits before it

    def __str__(self) -> str:
        dst = f" -> {self.dst!r}" if self.dst else ""
        size = f" {self.size} B" if self.kind in ("write", "append", "twin-write") else ""
        return f"{self.kind} {self.device} {self.path!r}{dst}{size} [{self.tag}]"


@dataclass(frozen=True)
class Fault:
    kind: str
    device: str = ""  #: empty for the hub's faults
    at: int = 0  #: index of the operation of the round it comes before
    seconds: float = 0.0  #: ``clock-jump``: how far the device's clock moves

    def __str__(self) -> str:
        jump = f" {self.seconds:+.0f} s" if self.kind == "clock-jump" else ""
        return f"fault {self.kind}{jump} {self.device or 'hub'} before op {self.at}"


@dataclass(frozen=True)
class Round:
    ops: tuple[Op, ...]
    faults: tuple[Fault, ...] = ()
    settle: float = 1.0  #: seconds after the round before its faults end


@dataclass(frozen=True)
class Plan:
    seed: int
    bob_right: str
    rounds: tuple[Round, ...]
    initial: tuple[Op, ...] = ()  #: written on alice-1 before the folder is shared
    #: the devices' storage host: ``Local`` (a shared folder) or ``Hub`` (the hub's blob store, reached through each
    #: device's fault proxy, so its network faults hit uploads and downloads too)
    storage: str = "Local"

    def steps(self) -> int:
        return len(self.initial) + sum(len(r.ops) + len(r.faults) for r in self.rounds)

    def describe(self) -> str:
        lines = [f"seed {self.seed}, bob has {self.bob_right}, storage {self.storage}"]
        lines += [f"  initial {op}" for op in self.initial]
        for number, rnd in enumerate(self.rounds):
            lines.append(f"  round {number} (settle {rnd.settle:.1f} s)")
            lines += [f"    {fault}" for fault in rnd.faults]
            lines += [f"    {op}" for op in rnd.ops]
        return "\n".join(lines)


@dataclass
class _Model:
    """What the generator believes the folder holds, as if every device were in sync: it steers operations
    towards paths that exist. Never checked: the real disks decide what an operation does."""

    files: set[str] = field(default_factory=set)

    def folders(self) -> list[str]:
        found = {f.rsplit("/", 1)[0] for f in self.files if "/" in f}
        return sorted(found | {p for f in found for p in _parents(f)})


def _parents(folder: str) -> list[str]:
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.08:
        return 0
    if roll < 0.12:
        return rng.randint(2 << 20, 4 << 20)  # very large: a few MiB
    if roll < 0.16:
        return rng.randint(64 << 10, 256 << 10)
    return rng.randint(1, 2000)


def _new_path(rng: random.Random) -> str:
    folder, name = rng.choice(FOLDERS), rng.choice(NAMES)
    return f"{folder}/{name}" if folder else name


def _some_file(rng: random.Random, model: _Model) -> str:
    if model.files and rng.random() < 0.75:
        return rng.choice(sorted(model.files))
    return _new_path(rng)


def _case_variant(rng: random.Random, path: str) -> str:
    head, _, name = path.rpartition("/")
    flipped = name.swapcase() if rng.random() < 0.5 else name[:1].swapcase() + name[1:]
    return f"{head}/{flipped}" if head else flipped


def _draw_op(rng: random.Random, model: _Model, tag: str) -> list[Op]:
    kind = rng.choices(list(OP_WEIGHTS), weights=list(OP_WEIGHTS.values()))[0]
    device = rng.choice(DEVICES)
    pause = rng.choice((0.0, 0.0, 0.05, 0.2, 0.5))
    if kind in ("write", "append", "truncate", "delete", "chmod"):
        path = _some_file(rng, model) if kind != "write" or rng.random() < 0.5 else _new_path(rng)
        if kind == "write":
            model.files.add(path)
        elif kind == "delete":
            model.files.discard(path)
        return [Op(kind, device, path, size=_size(rng), tag=tag, pause=pause)]
    if kind == "mkdir":
        folder, name = rng.choice(FOLDERS), rng.choice(EMPTY_FOLDERS)
        return [Op(kind, device, f"{folder}/{name}" if folder else name, tag=tag, pause=pause)]
    if kind == "twin-write":  # the same path written on two devices at once
        path = _some_file(rng, model)
        other = rng.choice([d for d in DEVICES if d != device])
        model.files.add(path)
        return [
            Op("write", device, path, size=_size(rng), tag=tag + "a", pause=pause),
            Op("write", other, path, size=_size(rng), tag=tag + "b"),
        ]
    if kind in ("move", "rename-cycle", "swap"):
        src = _some_file(rng, model)
        dst = _case_variant(rng, src) if rng.random() < 0.3 else _new_path(rng)
        if kind == "swap":
            dst = _some_file(rng, model)
        if src == dst:
            return []
        if kind == "move":
            model.files.discard(src)
            model.files.add(dst)
        return [Op(kind, device, src, dst=dst, tag=tag, pause=pause)]
    folders = model.folders()
    if not folders:
        return []
    src = rng.choice(folders)
    if kind == "delete-folder":
        model.files = {f for f in model.files if not f.startswith(src + "/")}
        return [Op(kind, device, src, tag=tag, pause=pause)]
    dst = _case_variant(rng, src) if rng.random() < 0.4 else rng.choice(("moved", "Moved", "ü-ñ/in", "x/y/z"))
    if dst == src or dst.startswith(src + "/"):
        return []
    model.files = {dst + f[len(src) :] if f.startswith(src + "/") else f for f in model.files}
    return [Op("move-folder", device, src, dst=dst, tag=tag, pause=pause)]


def make_plan(seed: int, rounds: int | None = None) -> Plan:
    """The plan of ``seed``: a few initial files on alice-1, then 3–5 rounds of 6–14 operations and 0–2 faults."""
    rng = random.Random(seed)
    model = _Model()
    initial = []
    for number in range(rng.randint(3, 8)):
        path = _new_path(rng)
        model.files.add(path)
        initial.append(Op("write", DEVICES[0], path, size=_size(rng) % 5000, tag=f"i{number}"))
    plan_rounds = []
    for number in range(rounds if rounds is not None else rng.randint(3, 5)):
        ops: list[Op] = []
        for index in range(rng.randint(6, 14)):
            ops += _draw_op(rng, model, f"r{number}.{index}")
        faults = []
        for _ in range(rng.choice((0, 1, 1, 2))):
            kind = rng.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]
            device = "" if kind.startswith("hub") else rng.choice(DEVICES)
            seconds = rng.choice(CLOCK_JUMPS) if kind == "clock-jump" else 0.0
            faults.append(Fault(kind, device, rng.randint(0, len(ops)), seconds))
        plan_rounds.append(Round(tuple(ops), tuple(faults), settle=rng.choice((0.5, 1.0, 2.0, 4.0))))
    bob_right = rng.choice(("U", "D"))
    return Plan(seed, bob_right, tuple(plan_rounds), tuple(initial), storage=rng.choice(STORAGES))


def without(plan: Plan, drop: set[tuple[int, str, int]]) -> Plan:
    """``plan`` without the steps named ``(round, "op"|"fault", index)`` (round -1: the initial files)."""
    initial = tuple(op for i, op in enumerate(plan.initial) if (-1, "op", i) not in drop)
    rounds = tuple(
        dataclasses.replace(
            rnd,
            ops=tuple(op for i, op in enumerate(rnd.ops) if (r, "op", i) not in drop),
            faults=tuple(f for i, f in enumerate(rnd.faults) if (r, "fault", i) not in drop),
        )
        for r, rnd in enumerate(plan.rounds)
    )
    return dataclasses.replace(plan, initial=initial, rounds=tuple(r for r in rounds if r.ops or r.faults))


def step_names(plan: Plan) -> list[tuple[int, str, int]]:
    names = [(-1, "op", i) for i in range(len(plan.initial))]
    for r, rnd in enumerate(plan.rounds):
        names += [(r, "fault", i) for i in range(len(rnd.faults))]
        names += [(r, "op", i) for i in range(len(rnd.ops))]
    return names


# -- applying an operation ----------------------------------------------------------------------------------------


def content(seed: int, op: Op, size: int) -> bytes:
    """A content no other operation writes: a header naming the step, then ``size`` pseudo-random bytes."""
    if size == 0:
        return b""
    head = f"sim seed {seed} {op.tag} {op.device}\n".encode()
    return head + random.Random(f"{seed}/{op.tag}").randbytes(max(0, size - len(head)))


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _contents_under(folder: Path) -> list[bytes]:
    found = []
    for top, _dirs, files in os.walk(folder):
        for name in files:
            if (data := _read(Path(top, name))) is not None:
                found.append(data)
    return found


def apply(root: Path, seed: int, op: Op, ledger: Ledger) -> str:
    """Do ``op`` under ``root`` as a user would; returns ``"done"`` or why it was skipped."""
    where = f"{op.tag} {op.device} {op.path}"
    try:
        return _APPLY[op.kind](root, seed, op, ledger, where)
    except OSError as exc:  # a parent that is a file, a folder where a file was expected, …
        return f"skipped: {type(exc).__name__}: {exc.strerror}"


def _write(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    path = root / op.path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content(seed, op, op.size)
    # in place, as most programs save: the old content is read through the same open file it is replaced in
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    ledger.wrote(data, where)
    try:
        old = b""
        while chunk := os.read(fd, 1 << 20):
            old += chunk
        if old:
            ledger.destroy(old)
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return "done"


def _append(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    path = root / op.path
    if _read(path) is None:
        return "skipped: no such file"
    extra = content(seed, op, max(1, op.size % 3000))
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        old = b""
        while chunk := os.read(fd, 1 << 20):
            old += chunk
        ledger.wrote(old + extra, where)
        ledger.destroy(old)
        os.pwrite(fd, extra, len(old))
    finally:
        os.close(fd)
    return "done"


def _truncate(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    path = root / op.path
    if _read(path) is None:
        return "skipped: no such file"
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        old = b""
        while chunk := os.read(fd, 1 << 20):
            old += chunk
        keep = (op.size * 7919) % (len(old) + 1) if old else 0
        ledger.wrote(old[:keep], where)
        ledger.destroy(old)
        os.ftruncate(fd, keep)
    finally:
        os.close(fd)
    return "done"


def _delete(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    path = root / op.path
    old = _read(path)
    if old is None:
        return "skipped: no such file"
    path.unlink()
    ledger.destroy(old, deleted=True)
    return "done"


def _chmod(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    path = root / op.path
    old = _read(path)
    if old is None:
        return "skipped: no such file"
    mode = path.stat().st_mode
    path.chmod(mode ^ (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    ledger.move(old)
    return "done"


def _move_file(root: Path, src_rel: str, dst_rel: str, ledger: Ledger) -> str:
    src, dst = root / src_rel, root / dst_rel
    data = _read(src)
    if data is None:
        return "skipped: no such file"
    if dst.exists() and not dst.is_file():
        return "skipped: a folder stands at the target"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if (old := _read(dst)) is not None and not os.path.samefile(src, dst):
        ledger.destroy(old, deleted=True)
    os.rename(src, dst)
    ledger.move(data)
    return "done"


def _move(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    return _move_file(root, op.path, op.dst, ledger)


def _rename_cycle(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    """a → b, then at once b → a: the folder ends as it began, possibly mid-cycle for the daemon."""
    outcome = _move_file(root, op.path, op.dst, ledger)
    if outcome != "done":
        return outcome
    return _move_file(root, op.dst, op.path, ledger)


def _swap(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    """a ↔ b through a third name: both files change places."""
    between = f"{op.path}.swap"
    if _read(root / op.dst) is None:
        return "skipped: no second file"
    for src, dst in ((op.path, between), (op.dst, op.path), (between, op.dst)):
        outcome = _move_file(root, src, dst, ledger)
        if outcome != "done":
            return outcome
    return "done"


def _move_folder(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    src, dst = root / op.path, root / op.dst
    if not src.is_dir() or src.is_symlink():
        return "skipped: no such folder"
    if dst.exists():
        return "skipped: the target exists"
    dst.parent.mkdir(parents=True, exist_ok=True)
    moved = _contents_under(src)
    os.rename(src, dst)
    for data in moved:
        ledger.move(data)
    return "done"


def _mkdir(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    folder = root / op.path
    if folder.exists() or folder.is_symlink():
        return "skipped: the path exists"
    folder.mkdir(parents=True)  # a file in the way of a parent: OSError, skipped
    return "done"


def _delete_folder(root: Path, seed: int, op: Op, ledger: Ledger, where: str) -> str:
    folder = root / op.path
    if not folder.is_dir() or folder.is_symlink():
        return "skipped: no such folder"
    for data in _contents_under(folder):
        ledger.destroy(data, deleted=True)
    shutil.rmtree(folder)
    return "done"


_APPLY = {
    "write": _write,
    "append": _append,
    "truncate": _truncate,
    "delete": _delete,
    "chmod": _chmod,
    "move": _move,
    "rename-cycle": _rename_cycle,
    "swap": _swap,
    "move-folder": _move_folder,
    "delete-folder": _delete_folder,
    "mkdir": _mkdir,
}
