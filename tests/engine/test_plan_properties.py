"""Planner properties (issue 10 §2): random base/local/remote trees through :func:`decide`, applied as pull.py and
push.py apply it, never drop a content, settle (planning the result again does nothing), converge and terminate.

The engine without its disk and database is tests/engine/plan_model.py: a device is its disk and its index's base,
a pull is ``_plan`` + ``_clear_remote_folders`` + ``_apply`` step by step, a push ``_prepare`` + ``_commit`` with
the 409 rule. Contents stand for sha256s; every write makes a new one, so "no loss" is a set check.
Downloads that fail (a device's ``failing`` paths) leave the pull unfinished and the push commits the rest with a
``push.Carry``. Not modelled: executable bits, mass-deletion holds (``is_mass_deletion`` is checked on its own),
stale manifests (``UNKNOWN``: the engine downloads and asks :func:`decide` again with the real hash, checked as a
table property), users changing files while a pull runs (``LocalChanged``) and read-only objects.

Example counts come from settings profiles: ``dev`` by default, ``ci`` when ``CI=true`` (``.ci/run``), ``soak``
with ``OAIOD_PLAN_PROFILE=soak``. Minimized failures stay as ``@example`` regression cases.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oaiod.engine.manifest import RemoteFile, build_manifest, remote_files
from oaiod.engine.plan import (
    UNKNOWN,
    Action,
    conflict_name,
    decide,
    is_mass_deletion,
    merge_values,
    under_remote_folders,
)
from oaiod.model import (
    FILES_VALUES_KEY,
    MAX_PATH_COMPONENT_BYTES,
    ValidationError,
    split_name,
    validate_file_path,
    validate_name,
)
from tests.engine.plan_model import (
    DEVICE_WHEN,
    PATHS,
    Device,
    Edit,
    Server,
    Tree,
    Writer,
    apply_edit,
    carried_tree,
    fits,
    is_copy,
    is_tree,
    plan,
    pull,
    push,
    quiesce,
    snapshot,
    sync,
)

# -- settings profiles --------------------------------------------------------------------------------------------

# No example database: it would write .hypothesis/ into the tree; a minimized failure becomes an @example here.
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("oaiod-plan-dev", max_examples=100, **_COMMON)
settings.register_profile("oaiod-plan-ci", max_examples=500, derandomize=True, **_COMMON)  # ~4,900 in all
settings.register_profile("oaiod-plan-soak", max_examples=20_000, **_COMMON)


def _profile() -> settings:
    """The profile for this run (registered under oaiod-only names and never loaded globally, so the other
    Hypothesis users of the suite keep their own settings)."""
    name = os.environ.get("OAIOD_PLAN_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
    return settings.get_profile(f"oaiod-plan-{name}")


PROFILE = _profile()


def scaled(fraction: float) -> settings:
    """The profile with ``fraction`` of its examples (the cheap table properties run the most, the simulation
    of several devices the fewest)."""
    return settings(PROFILE, max_examples=max(10, int(PROFILE.max_examples * fraction)))


# -- trees and edits ----------------------------------------------------------------------------------------------

# An edit: (kind, path index, second path index). Indices are taken modulo what exists when the edit is applied.
edits = st.lists(
    st.tuples(
        st.sampled_from(("edit", "create", "create", "delete", "rmdir", "move")),
        st.integers(0, len(PATHS) - 1),
        st.integers(0, len(PATHS) - 1),
    ),
    max_size=6,
)


@st.composite
def base_trees(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    for index in draw(st.lists(st.integers(0, len(PATHS) - 1), max_size=8)):
        if fits(tree, PATHS[index]):
            tree[PATHS[index]] = f"base{index}"
    return tree


# -- the table ----------------------------------------------------------------------------------------------------

shas = st.sampled_from(("A", "B", "C", None))
MIRROR = {
    Action.NOTHING: Action.NOTHING,
    Action.DOWNLOAD: Action.PUSH,
    Action.TRASH_LOCAL: Action.PUSH,
    Action.KEEP_LOCAL: Action.RESTORE,
    Action.RESTORE: Action.KEEP_LOCAL,
    Action.CONFLICT: Action.CONFLICT,
}


@given(shas, shas, shas)
@settings(scaled(0.25))
def test_the_table_is_symmetric(base: str | None, local: str | None, remote: str | None) -> None:
    """Swapping the sides swaps the roles: what one device downloads the other pushes, keep-local is restore."""
    action, mirrored = decide(base, local, remote), decide(base, remote, local)
    if action is Action.PUSH:
        assert mirrored is (Action.TRASH_LOCAL if local is None else Action.DOWNLOAD)
    else:
        assert mirrored is MIRROR[action]


@given(shas, shas, shas, st.booleans())
@settings(scaled(0.25))
def test_the_table_keeps_every_change(base: str | None, local: str | None, remote: str | None, has_base: bool):
    """Settled sides do nothing; a side equal to the base never wins over a change; a change is never dropped."""
    if not has_base:
        base = None
    action = decide(base, local, remote, has_base=has_base)
    assert decide(local, local, local, has_base=has_base) is Action.NOTHING
    assert decide(base, local, UNKNOWN, has_base=has_base) is Action.FETCH_AND_DECIDE
    if remote is not None:  # _fetch_and_decide handles exactly these once the download's hash is known
        assert action in {Action.NOTHING, Action.DOWNLOAD, Action.PUSH, Action.RESTORE, Action.CONFLICT,
                          Action.CONFLICT_NO_BASE}  # fmt: skip
    if local != base and local is not None:  # a local change stays at its path or in a conflicted copy
        assert action not in (Action.DOWNLOAD, Action.TRASH_LOCAL, Action.RESTORE)
    if remote != base and remote is not None:  # a remote change arrives (at its path or as a copy)
        assert action in (Action.NOTHING, Action.DOWNLOAD, Action.RESTORE, Action.CONFLICT, Action.CONFLICT_NO_BASE)
        assert action is not Action.NOTHING or local == remote
    if not has_base and local is not None:  # without a base the user's file is never replaced
        assert action in (Action.NOTHING, Action.PUSH, Action.CONFLICT_NO_BASE)


# -- one pull and push: base, local and remote ----------------------------------------------------------------------


@st.composite
def three_trees(draw: st.DrawFn) -> tuple[Tree, Tree, Tree, Writer]:
    """A base, and local and remote each derived from it by edits; some edits are made on both sides alike."""
    writer = Writer()
    base = draw(base_trees())
    local, remote = dict(base), dict(base)
    for edit in draw(edits):  # the same edit on both sides: identical changes
        content = writer.fresh()
        apply_edit(local, edit, content)
        apply_edit(remote, edit, content)
    for side in (local, remote):
        for edit in draw(edits):
            apply_edit(side, edit, writer.fresh())
    return base, local, remote, writer


def pull_and_push(base: Tree, local: Tree, remote: Tree, *, has_base: bool = True) -> tuple[Device, Device, Server]:
    """Device "here" (local on disk, base indexed) syncs against version 2 (remote), which device "there" made;
    then "there" syncs too. Returns both devices and the server."""
    here = Device("here", dict(local), dict(base) if has_base else {}, 1 if has_base else None)
    there = Device("there", dict(remote), dict(remote), 2)
    server = Server(2, dict(remote), "there")
    sync(here, server)
    sync(there, server)
    return here, there, server


def assert_converged(devices: Iterable[Device], server: Server) -> None:
    for device in devices:
        assert device.disk == server.tree, f"{device.name} did not converge"
        assert device.synced == server.tree and device.version == server.version and not device.remote_dirty


def assert_settled(devices: list[Device], server: Server) -> None:
    """Planning the result against itself (base = local = remote) does nothing: no step, no version, no disk."""
    for device in devices:
        assert plan(device, server.tree) == [] or all(a is Action.NOTHING for _p, a in plan(device, server.tree))
        before, version = snapshot(device), server.version
        sync(device, server)
        assert snapshot(device) == before and server.version == version


@given(three_trees())
@example(({"a": "base0"}, {"a": "c1"}, {"a/a": "c2"}, Writer()))  # file here, folder there
@example(({"a/a": "base1"}, {"a": "c1"}, {"a/a": "base1"}, Writer()))  # folder deleted here, made a file
@example(({"a/a": "base1"}, {"a/a": "base1"}, {"a": "c1"}, Writer()))  # ... and the mirror
@settings(scaled(2))
def test_a_pull_and_push_keeps_every_change(trees: tuple[Tree, Tree, Tree, Writer]) -> None:
    """Every content either side changed is in the converged tree (at its path or a conflicted copy); what one side
    deleted and the other left alone is gone; both devices converge; a second round does nothing."""
    base, local, remote, _writer = trees
    here, there, server = pull_and_push(base, local, remote)
    assert_converged([here, there], server)
    assert_settled([here, there], server)
    final = Counter(server.tree.values())
    for side in (local, remote):
        for path, content in side.items():
            if base.get(path) != content:
                assert final[content] >= 1, f"{path}: {content} was lost"
    for path, content in base.items():  # deleted on one side, untouched on the other: stays deleted
        kept_by = [side for side in (local, remote) if content in side.values()]
        if (local.get(path) is None or remote.get(path) is None) and not kept_by:
            assert content not in final, f"{path}: {content} came back"
    for path, content in local.items():  # the only contents that leave this device's disk go to its trash
        assert content in final or (path, content) in here.trash, f"{path}: {content} left without the trash"


@given(three_trees())
@example(({"a/a": "base1"}, {"a": "c1"}, {"a/a": "base1", "b": "c2"}, Writer()))  # was a conflicted copy: 316fd6e
@settings(scaled(1))
def test_pulling_is_symmetric(trees: tuple[Tree, Tree, Tree, Writer]) -> None:
    """Which device commits first changes only which side's content takes a conflicted path's name: the same
    contents survive, under the same other names."""
    base, local, remote, _writer = trees
    _, _, one = pull_and_push(base, local, remote)
    _, _, other = pull_and_push(base, remote, local)
    assert Counter(one.tree.values()) == Counter(other.tree.values())
    assert {p for p in one.tree if not is_copy(p)} == {p for p in other.tree if not is_copy(p)}


@given(three_trees())
@settings(scaled(0.5))
def test_a_first_sync_never_moves_the_users_files(trees: tuple[Tree, Tree, Tree, Writer]) -> None:
    """Without a base (a first sync of a folder that already holds files) every file of the user's stays at its
    path with its content, unless the server holds a folder of that name; every server file arrives."""
    _base, local, remote, _writer = trees
    here, there, server = pull_and_push({}, local, remote, has_base=False)
    assert_converged([here, there], server)
    assert_settled([here, there], server)
    folders = under_remote_folders(local, remote)
    for path, content in local.items():
        if path in folders:
            assert content in server.tree.values()
        else:
            assert server.tree.get(path) == content, f"{path} was replaced or moved"
    final = Counter(server.tree.values())
    for content in remote.values():
        assert final[content] >= 1


@given(three_trees(), st.sets(st.sampled_from(PATHS), max_size=6))
@example(({"a": "base0"}, {"a/a": "c1"}, {"a": "c2"}, Writer()), {"a"})  # a folder here where a failed file goes
@settings(scaled(1))
def test_a_path_that_cannot_be_merged_does_not_block_the_rest(
    trees: tuple[Tree, Tree, Tree, Writer], failing: set[str]
) -> None:
    """Downloads of ``failing`` paths fail on device "here": its sync still commits every other change of its own
    on top of the server's version (push.Carry), the failed paths as the server has them, so nothing of the server's
    is overwritten; once the downloads work again both devices converge and no content is lost."""
    base, local, remote, _writer = trees
    here = Device("here", dict(local), dict(base), 1, failing=set(failing))
    there = Device("there", dict(remote), dict(remote), 2)
    server = Server(2, dict(remote), "there")
    carry = sync(here, server)
    if carry is not None and not is_tree(carried_tree(here, carry)):  # a failed file where a folder stands here
        assert server.tree == remote  # held back (push._carried_clash): a manifest never has both
    elif carry is not None:
        assert carry.paths <= failing
        assert here.remote_dirty and server.tree == carried_tree(here, carry)
        for path in carry.paths:
            assert server.tree.get(path) == remote.get(path), f"{path}: the server's content was overwritten"
        for path in set(here.disk) - carry.paths:
            assert server.tree.get(path) == here.disk[path], f"{path}: held back by a path that failed"
    here.failing.clear()
    quiesce([here, there], server)
    assert_converged([here, there], server)
    final = Counter(server.tree.values())
    for side in (local, remote):
        for path, content in side.items():
            if base.get(path) != content:
                assert final[content] >= 1, f"{path}: {content} was lost"
    for path, content in local.items():
        assert content in final or (path, content) in here.trash, f"{path}: {content} left without the trash"


# -- several devices, interleaved ---------------------------------------------------------------------------------

# A step of the run: (device index, what: "edit" | "adopt" | "pull" | "push" | "sync" | "break" | "mend", an edit);
# "break" makes the downloads of one path fail on that device (PATHS[edit[1]]), "mend" makes them work again.
run_steps = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(("edit", "edit", "edit", "adopt", "pull", "push", "sync", "sync", "break", "mend")),
        st.tuples(
            st.sampled_from(("edit", "create", "create", "delete", "rmdir", "move")),
            st.integers(0, len(PATHS) - 1),
            st.integers(0, len(PATHS) - 1),
        ),
    ),
    max_size=30,
)


@dataclass
class Ledger:
    """What the users did: who wrote each content, and contents a user deleted or overwrote (released)."""

    writer: Writer = field(default_factory=Writer)
    released: dict[str, set[str]] = field(default_factory=dict)  # content -> devices whose user dropped it

    def record(self, device: Device, written: list[tuple[str, str]], removed: list[tuple[str, str]]) -> None:
        for _path, content in removed:
            if content not in device.disk.values():  # a rename keeps the content on this device
                self.released.setdefault(content, set()).add(device.name)
        for _path, content in written:
            self.writer.writers.setdefault(content, set()).add(device.name)
            self.released.get(content, set()).discard(device.name)


def user_step(device: Device, others: list[Device], what: str, edit: Edit, ledger: Ledger) -> None:
    if what == "edit":
        written, removed = apply_edit(device.disk, edit, ledger.writer.fresh())
    else:  # adopt: write the content another device holds at a path (an identical edit, made independently)
        source = others[edit[1] % len(others)]
        shared = sorted(path for path in source.disk if source.disk[path] != device.disk.get(path))
        if not shared:
            return
        path = shared[edit[2] % len(shared)]
        if path not in device.disk and not fits(device.disk, path):
            return
        removed = [(path, device.disk[path])] if path in device.disk else []
        device.disk[path] = source.disk[path]
        written = [(path, source.disk[path])]
    ledger.record(device, written, removed)


@given(base_trees(), run_steps)
# a conflicted copy named like a copy the server's version holds (made elsewhere in the same second)
@example({}, [(0, "edit", ("create", 4, 0)), (1, "edit", ("create", 0, 0)), (1, "push", ("edit", 0, 0)),
              (1, "edit", ("edit", 0, 0))])  # fmt: skip
@settings(scaled(2))
def test_devices_converge_and_lose_nothing(base: Tree, steps: list[tuple[int, str, Edit]]) -> None:
    """Three devices edit, pull, push and sync in any order, committing against each other (409s), some downloads
    failing for a while (the push carries those paths); then every
    device syncs until a round does nothing. That takes at most three rounds, every device ends with the server's
    tree, every content a user wrote and no user deleted is in it, and every content a writer's user did not
    drop is in it or in that writer's trash."""
    server = Server(1, dict(base))
    devices = [Device(f"d{n}", dict(base), dict(base), 1) for n in range(3)]
    ledger = Ledger()
    for index, what, edit in steps:
        device = devices[index]
        if what in ("edit", "adopt"):
            user_step(device, [d for d in devices if d is not device], what, edit, ledger)
        elif what == "pull":
            pull(device, server)
        elif what == "push" and not push(device, server):
            pass  # a 409: the next sync pulls and merges
        elif what == "sync":
            sync(device, server)
        elif what == "break":
            device.failing.add(PATHS[edit[1]])
        elif what == "mend":
            device.failing.clear()
    for device in devices:
        device.failing.clear()
    quiesce(devices, server)
    assert_converged(devices, server)
    assert_settled(devices, server)
    final = set(server.tree.values())
    for content, writers in ledger.writer.writers.items():
        released = ledger.released.get(content, set())
        if not released:
            assert content in final, f"{content} (written on {sorted(writers)}) was lost"
        for name in writers - released:
            trash = {c for _p, c in devices[int(name[1:])].trash} if name.startswith("d") else set()
            assert content in final or content in trash, f"{content} left {name} without reaching its trash"


# -- conflict names, values, folders, mass deletion, the manifest ---------------------------------------------------

name_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="/\\\x00")
file_names = st.text(name_chars, min_size=1, max_size=120).filter(
    lambda name: name not in (".", "..") and len(name.encode()) <= MAX_PATH_COMPONENT_BYTES
)
#: any id the server passes on (validate_name: up to 150 printable characters, backslashes and all)
device_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=150).filter(
    lambda device: _is_valid_name(device)
)


def _is_valid_name(value: str) -> bool:
    try:
        validate_name(value, "device_id")
    except ValidationError:
        return False
    return True


@given(file_names, st.sampled_from(("", ".txt", ".tar.gz", ".ünï", ".x" * 7)), device_ids, st.integers(1, 10_000))
@example("report", ".txt", "é" * 150, 2)  # was 345 bytes: the file's merge failed every cycle (UnsafePath)
@example("report", ".txt", "C:\\devices\\laptop", 1)  # was refused for its backslashes, every cycle
@settings(scaled(1))
def test_conflict_names_fit_keep_the_extension_and_differ(name: str, ext: str, device: str, number: int) -> None:
    """A conflicted copy's name is a valid path beside the file for any device id, fits 255 bytes, keeps an
    extension of up to 15 bytes and differs from the file's and from every other number's."""
    name = (name + ext).encode()[:MAX_PATH_COMPONENT_BYTES].decode(errors="ignore") or "x"
    path = f"docs/{name}"
    copy = conflict_name(path, device, DEVICE_WHEN, number)
    assert validate_file_path(copy) == copy
    folder, copy_name = copy.rsplit("/", 1)
    assert folder == "docs" and copy != path
    assert len(copy_name.encode()) <= MAX_PATH_COMPONENT_BYTES
    _stem, extension = split_name(name)
    if len(extension.encode()) <= 15:
        assert copy_name.endswith(extension)
    assert copy != conflict_name(path, device, DEVICE_WHEN, number + 1)


values = st.dictionaries(st.sampled_from("abcde"), st.integers(0, 3), max_size=5)


@given(values, values, values, st.booleans())
@settings(scaled(0.5))
def test_merge_values_is_a_three_way_merge(base: dict[str, Any], local: dict[str, Any], remote: dict[str, Any],
                                           local_newer: bool) -> None:  # fmt: skip
    merged, conflicts = merge_values(base, local, remote, local_newer=local_newer)
    assert merge_values(merged, merged, merged) == (merged, [])  # idempotent
    assert merge_values(base, base, remote) == (remote, []) and merge_values(base, local, base) == (local, [])
    mirrored, mirrored_conflicts = merge_values(base, remote, local, local_newer=not local_newer)
    assert mirrored == merged and mirrored_conflicts == conflicts  # symmetric, the newer side named alike
    missing = object()
    for key in {*base, *local, *remote}:
        b, lo, re = base.get(key, missing), local.get(key, missing), remote.get(key, missing)
        if lo != b and re != b and lo != re:
            assert key in conflicts
        else:
            assert key not in conflicts
            assert merged.get(key, missing) == (lo if re == b else re)


@given(st.sets(st.sampled_from(PATHS), max_size=12), st.sets(st.sampled_from(PATHS), max_size=12))
@settings(scaled(0.5))
def test_under_remote_folders_is_every_file_that_is_a_folder_there(local: set[str], remote: set[str]) -> None:
    expected = {path for path in local if any(other.startswith(path + "/") for other in remote)}
    assert under_remote_folders(local, remote) == expected


@given(st.integers(0, 1000), st.integers(0, 1000), st.floats(0, 1), st.integers(1, 50))
@settings(scaled(0.5))
def test_mass_deletion_rule(deleted: int, total: int, ratio: float, minimum: int) -> None:
    held = is_mass_deletion(deleted, total, ratio=ratio, minimum=minimum)
    if deleted < minimum or total == 0:
        assert not held
    if held:
        assert is_mass_deletion(deleted + 1, total, ratio=ratio, minimum=minimum)  # more deleted: held too
        assert deleted > ratio * total
    if total and deleted >= minimum and deleted > ratio * total:
        assert held


SHA = st.text("0123456789abcdef", min_size=64, max_size=64)
entries = st.tuples(st.integers(0, 2**40), st.integers(0, 2**62), SHA, st.booleans())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(PATHS), entries, max_size=6), st.sampled_from(("1", "2")))
@settings(scaled(0.5))
def test_a_manifest_is_read_back_for_its_own_version_only(files: dict[str, tuple[Any, ...]], stamp: str) -> None:
    manifest = build_manifest("root", "1", {path: list(entry) for path, entry in files.items()})
    values = {FILES_VALUES_KEY: sorted(files), "_oaiod": manifest}
    read = remote_files(values, stamp)
    assert set(read) == set(files)
    for path, (size, mtime_ns, sha, executable) in files.items():
        expected = RemoteFile(sha, size, mtime_ns, executable) if stamp == "1" else RemoteFile(UNKNOWN)
        assert read[path] == expected


@given(st.lists(st.sampled_from(PATHS), unique=True, max_size=5), json_values, json_values)
@settings(scaled(0.5))
def test_a_malformed_manifest_is_stale_as_a_whole(paths: list[str], files: Any, entry: Any) -> None:
    """Hostile manifest values never raise and are trusted whole or not at all."""
    if isinstance(files, dict) and paths:
        files = {**files, paths[0]: entry}
    values = {FILES_VALUES_KEY: paths, "_oaiod": {"v": 1, "kind": "root", "stamp": "1", "files": files}}
    read = remote_files(values, "1")
    assert set(read) == set(paths)
    known = [path for path in paths if read[path].sha256 is not UNKNOWN]
    if known:  # trusted: every listed entry was well formed
        assert isinstance(files, dict)
        for path in paths:
            if path in files:
                assert read[path].sha256 is not UNKNOWN
