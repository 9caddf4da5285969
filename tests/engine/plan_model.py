"""The sync engine without disk and database, for the planner properties (tests/engine/test_plan_properties.py).

A device is its disk (``path -> content``) and its index's base (``files.synced_sha256``); :func:`pull` is
pull.py's ``_plan`` + ``_clear_remote_folders`` + ``_apply`` step by step (conflicted copies, the trash, keep-local,
restore, a file and a folder of one name), :func:`push` is push.py's ``_prepare`` + ``_commit`` with the 409 rule.
A device's ``failing`` paths are downloads that fail (a storage error, a full disk): their steps do nothing, the pull
is left unfinished and returns a :class:`Carry` (push.Carry, made by cycle._pull_one), with which the push commits
on top of the server's version, those paths as the server has them.
Contents stand for sha256s. Keep it in step with pull.py and push.py: a property that fails here and not on the real
engine (or the reverse) means the model drifted.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field

from oaiod.engine.plan import Action, conflict_name, decide, under_remote_folders

# -- trees and edits ----------------------------------------------------------------------------------------------

Tree = dict[str, str]  # path -> content (a content stands for a sha256)

#: names that make every interesting shape: a file and a folder of one name, case variants, an extension
NAMES = ("a", "b", "A", "a.txt")
PATHS = tuple("/".join(parts) for depth in (1, 2, 3) for parts in itertools.product(NAMES, repeat=depth))
DEVICE_WHEN = dt.datetime(2025, 11, 22, 10, 15, 0)  # one second for every copy: numbered copies get exercised


def fits(tree: Tree, path: str) -> bool:
    """True when a file may be created at ``path``: nothing there, no file above it, no folder of that name."""
    if path in tree:
        return False
    parts = path.split("/")
    if any("/".join(parts[:depth]) in tree for depth in range(1, len(parts))):
        return False
    return not any(other.startswith(path + "/") for other in tree)


def is_folder(tree: Tree, path: str) -> bool:
    return any(other.startswith(path + "/") for other in tree)


def is_copy(path: str) -> bool:
    return " (conflicted copy from " in path


@dataclass
class Writer:
    """Fresh contents, and who wrote each (a content written twice, an identical edit, has two writers)."""

    count: int = 0
    writers: dict[str, set[str]] = field(default_factory=dict)

    def fresh(self) -> str:
        self.count += 1
        return f"c{self.count}"


Edit = tuple[str, int, int]  #: (kind, path index, second path index), taken modulo what exists


def apply_edit(tree: Tree, edit: Edit, content: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Apply one user edit to ``tree`` in place; returns ``(written, removed)`` as ``(path, content)`` pairs.
    An edit that does not fit the tree (a file under a file…) does nothing."""
    kind, first, second = edit
    existing = sorted(tree)
    if kind == "create":
        path = PATHS[first]
        if not fits(tree, path):
            return [], []
        tree[path] = content
        return [(path, content)], []
    if not existing:
        return [], []
    path = existing[first % len(existing)]
    if kind == "edit":
        removed = [(path, tree[path])]
        tree[path] = content
        return [(path, content)], removed
    if kind == "delete":
        return [], [(path, tree.pop(path))]
    if kind == "rmdir":
        folder = path.rpartition("/")[0] or path
        gone = [p for p in existing if p == folder or p.startswith(folder + "/")]
        return [], [(p, tree.pop(p)) for p in gone]
    moved = tree.pop(path)  # move: a rename is a delete and a create of the same content
    target = PATHS[second]
    if not fits(tree, target):
        tree[path] = moved
        return [], []
    tree[target] = moved
    return [(target, moved)], [(path, moved)]


# -- the engine, without disk and database --------------------------------------------------------------------------


@dataclass
class Device:
    """One device's copy of one object: its disk, its index's base (path -> synced content) and the version that
    base is (``row.synced_stamp``; None: never synced, no base)."""

    name: str
    disk: Tree
    synced: Tree
    version: int | None
    trash: list[tuple[str, str]] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    remote_dirty: bool = False
    failing: set[str] = field(default_factory=set)  #: paths whose download fails while they are here


@dataclass(frozen=True)
class Carry:
    """push.Carry: the pull merged all of server ``version`` but ``paths``."""

    version: int
    remote: Tree
    paths: frozenset[str]


#: the steps that fetch a file from storage (pull._needs_backend): those of a failing path fail
FETCHING = (Action.DOWNLOAD, Action.RESTORE, Action.CONFLICT, Action.CONFLICT_NO_BASE)


@dataclass
class Server:
    version: int
    tree: Tree
    author: str = "server"


class Stuck(AssertionError):
    """A pull on a quiet disk that cannot finish: the device would retry it forever (issue 10's first finding)."""


def free_conflict_name(disk: Tree, path: str, device: str, remote: Tree) -> str:
    """pull._free_conflict_name: numbered until nothing (file or folder) here or in the server's version has the
    name."""
    number = 1
    candidate = conflict_name(path, device, DEVICE_WHEN)
    while any(candidate in tree or is_folder(tree, candidate) for tree in (disk, remote)):
        number += 1
        candidate = conflict_name(path, device, DEVICE_WHEN, number)
    return candidate


def plan(device: Device, remote: Tree) -> list[tuple[str, Action]]:
    """pull._plan: a step per row that is not already settled, then one per remote file without a row."""
    has_base = device.version is not None
    steps: list[tuple[str, Action]] = []
    rows = sorted(set(device.disk) | set(device.synced))
    for path in rows:
        base, local, theirs = device.synced.get(path), device.disk.get(path), remote.get(path)
        action = decide(base, local, theirs, has_base=has_base)
        if action is Action.NOTHING and base == theirs and (local is not None or theirs is None):
            if theirs is None and local is None:
                steps.append((path, action))  # deleted on both sides: drop the row
            continue
        steps.append((path, action))
    for path in sorted(set(remote) - set(rows)):
        steps.append((path, decide(None, None, remote[path], has_base=has_base)))
    return steps


def pull(device: Device, server: Server) -> Carry | None:
    """pull.pull_object for one version, as a sequence of steps on the model; the :class:`Carry` of a pull whose
    ``failing`` downloads failed (the version is then not the base, and the object stays ``remote_dirty``)."""
    if device.version == server.version and not device.remote_dirty:
        return None
    remote = server.tree
    steps = plan(device, remote)
    here = {path for path, _action in steps if path not in remote and path in device.disk}
    deleted_here = {path for path, action in steps if action is Action.PUSH and path not in device.disk}
    clashing = under_remote_folders(here, set(remote) - deleted_here) if here else set()
    for path, action in steps:  # _clear_remote_folders: before any download needs the folder
        if path in clashing:
            apply_step(device, server, path, action if action is Action.TRASH_LOCAL else Action.MOVE_ASIDE)
    failed: set[str] = set()
    for path, action in steps:
        if path in clashing:
            continue
        if action in FETCHING and path in device.failing:
            failed.add(path)  # pull._apply_step: recorded, backed off, merged again by the next pull
            continue
        apply_step(device, server, path, action)
    if failed:
        device.remote_dirty = True
        return Carry(server.version, dict(remote), frozenset(failed))
    device.version, device.remote_dirty = server.version, False
    return None


def install(device: Device, server: Server, path: str, content: str) -> None:
    """pull._install of a download (synced): replaces the file there (to the trash first), or beside a folder."""
    disk = device.disk
    parts = path.split("/")
    if any("/".join(parts[:depth]) in disk for depth in range(1, len(parts))):
        raise Stuck(f"{device.name}: a file stands where {path} needs a folder")
    if is_folder(disk, path):
        assert path not in disk
        copy = free_conflict_name(disk, path, server.author, server.tree)  # _install_beside_folder
        disk[copy] = content
        device.copies.append(copy)
        device.synced[path] = content  # rows.absent: the next commit deletes it
        return
    if path in disk:
        device.trash.append((path, disk[path]))
    disk[path] = content
    device.synced[path] = content


def apply_step(device: Device, server: Server, path: str, action: Action) -> None:
    """pull._apply for one step."""
    disk, synced, theirs = device.disk, device.synced, server.tree.get(path)
    if action is Action.NOTHING:
        if theirs is None:
            synced.pop(path, None)
        else:
            synced[path] = theirs
    elif action in (Action.DOWNLOAD, Action.RESTORE):
        assert theirs is not None
        install(device, server, path, theirs)
    elif action is Action.TRASH_LOCAL:
        if path in disk:
            device.trash.append((path, disk.pop(path)))
        synced.pop(path, None)
    elif action is Action.KEEP_LOCAL:
        synced.pop(path, None)
    elif action is Action.CONFLICT:
        assert theirs is not None
        copy = free_conflict_name(disk, path, device.name, server.tree)
        disk[copy] = disk.pop(path)  # rows.write(copy, synced=False) keeps a row's synced value, if any
        device.copies.append(copy)
        synced.pop(path, None)
        install(device, server, path, theirs)
    elif action is Action.CONFLICT_NO_BASE:
        assert theirs is not None
        copy = free_conflict_name(disk, path, server.author, server.tree)
        disk[copy] = theirs
        device.copies.append(copy)
        synced[path] = theirs
    elif action is Action.MOVE_ASIDE:
        copy = free_conflict_name(disk, path, device.name, server.tree)
        disk[copy] = disk.pop(path)
        device.copies.append(copy)
        synced.pop(path, None)
    else:
        assert action is Action.PUSH, action


def has_changes(device: Device) -> bool:
    """push._prepare's ``changed``: a file added, changed or deleted since the base (without a base: any file)."""
    if device.version is None:
        return bool(device.disk)
    paths = set(device.disk) | set(device.synced)
    return any(device.disk.get(path) != device.synced.get(path) for path in paths)


def is_tree(tree: Tree) -> bool:
    """No file stands where another file needs a folder (a manifest the engine could not lay out)."""
    return not any(path.rsplit("/", depth)[0] in tree for path in tree for depth in range(1, path.count("/") + 1))


def carried_tree(device: Device, carry: Carry) -> Tree:
    """push._prepare with a carry: every other path as it is here, each carried one as the server has it."""
    tree = {path: content for path, content in device.disk.items() if path not in carry.paths}
    tree.update({path: carry.remote[path] for path in carry.paths if path in carry.remote})
    return tree


def push(device: Device, server: Server, carry: Carry | None = None) -> bool:
    """push.push_object: commit the disk if it changed; False on a 409 (the caller pulls and tries again). An
    unfinished pull holds the push back unless ``carry`` is of the version the device last saw (its pull merged
    all of it but the carried paths)."""
    if device.remote_dirty:
        if carry is None:
            return True  # "merging comes first"
        if carry.version != server.version:
            return False  # committed on top of the version pulled: a 409 once another device committed since
        tree = carried_tree(device, carry)
        if tree == carry.remote:
            return True
        if not is_tree(tree):
            return True  # push._carried_clash: a file and a folder of one name; merging comes first
        server.version += 1
        server.tree, server.author = tree, device.name
        kept = {path: content for path, content in device.synced.items() if path in carry.paths}
        device.synced = {path: content for path, content in device.disk.items() if path not in carry.paths} | kept
        device.version = server.version  # still remote_dirty: the next pull merges the carried paths
        return True
    if not has_changes(device):
        return True
    if device.version != server.version:
        return False
    server.version += 1
    server.tree, server.author = dict(device.disk), device.name
    device.synced, device.version = dict(device.disk), server.version
    return True


def sync(device: Device, server: Server, attempts: int = 5) -> Carry | None:
    """One cycle: pull, then push, pulling again after each 409 (cycle._push_all); returns the last pull's carry."""
    carry = pull(device, server)
    for _attempt in range(attempts):
        if push(device, server, carry):
            return carry
        carry = pull(device, server)
    raise AssertionError(f"{device.name}: still losing races after {attempts} commits")


def quiesce(devices: list[Device], server: Server, rounds: int = 3) -> None:
    """Every device syncs in turn until a whole round changes nothing: it must within ``rounds``."""
    for _round in range(rounds):
        before = server.version
        for device in devices:
            sync(device, server)
        if server.version == before:
            return
    raise AssertionError(f"no fixed point after {rounds} rounds of every device syncing")


def snapshot(device: Device) -> tuple[Tree, Tree, int | None]:
    return dict(device.disk), dict(device.synced), device.version
