"""Step 3 of a cycle: commit a new version of an object with local changes (design §4).

1. stamp ``S`` and a journal row; 2. every file of the new manifest is put at ``<oaio_id>/S/<path>``: changed ones
uploaded with ``backend.put_many`` in bounded batches (a file that is not as indexed, or changes during its upload,
aborts the commit), unchanged ones carried from the base version with one ``backend.copy_prefix`` (its size grows
with what changed, not with the folder), renamed ones server-side copied (one ``backend.copy_many``), then one
``backend.flush()`` makes them all durable (one sync per version, not per file);
3. ``upload/`` (or ``register/``) with ``server_stamp`` = the base: the commit point;
4. the new synced state in one transaction, journal row deleted. A 409 returns the server's object so the cycle
pulls, merges and tries again; the partial prefix ``<oaio_id>/S/`` is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from oaiod.engine import history
from oaiod.engine.context import TRANSFER_PIPELINE, EngineContext, in_flight, transfer_batches
from oaiod.engine.localfs import LocalChanged
from oaiod.engine.manifest import MANIFEST_KEY, RemoteFile, build_manifest, folders_of, remote_dirs, remote_files
from oaiod.engine.plan import UNKNOWN, is_mass_deletion, merge_values
from oaiod.engine.values import record_clashes
from oaiod.model import FILES_VALUES_KEY, OaiObject, now_stamp, right_grants, stamp_add, storage_key
from oaiod.server_api import UploadConflict
from oaiod.state.models import (
    KIND_DATA,
    KIND_FOLDER,
    KIND_ROOT,
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_NEW,
    FileRow,
    JournalRow,
    ObjectRow,
)
from oaiod.storage.base import Backend, Transfer, Transferred
from oaiod.storage.errors import LocalFileChanged, ObjectNotFound, StorageError

log = logging.getLogger("oaiod.engine.push")

COMMIT = "commit"


@dataclass
class PushOutcome:
    """What a push did; ``conflict`` holds the server's object when another device committed first."""

    committed: str = ""
    uploaded: int = 0
    copied: int = 0
    held: bool = False
    readonly: bool = False
    conflict: OaiObject | None = None
    retry_paths: list[Path] = field(default_factory=list)


@dataclass
class _Commit:
    stamp: str
    files: dict[str, list[Any]]  # the manifest: path -> [size, mtime_ns, sha256, executable]
    sources: dict[str, str | None]  # path -> base path to copy from (None: upload)
    deleted: int
    base_total: int
    changed: bool
    copy_base: str = ""  # the version the sources are copied from
    carried: frozenset[str] = frozenset()
    dirs: list[str] = field(default_factory=list)  # the empty folders
    base_paths: frozenset[str] = frozenset()  # the files of the version copied from


@dataclass(frozen=True)
class Carry:
    """A pull of this cycle merged all of the server's version ``stamp`` but ``paths`` (design §5: one path that
    cannot be merged — a download that fails, a file changed during the merge — does not hold back the rest).
    The push then commits on top of that version: every other path as it is here, each of ``paths`` exactly as the
    server has it (``remote``: its manifest), so nothing of the server's is overwritten or lost; their index rows
    stay as they were and the object stays ``remote_dirty``, so the next pull merges them again."""

    stamp: str
    remote: dict[str, RemoteFile]
    paths: frozenset[str]
    dirs: frozenset[str] = frozenset()  #: the empty folders of the server's version

    @classmethod
    def of(cls, remote: OaiObject, paths: set[str]) -> Carry | None:
        """None when the server's manifest does not describe every file (a stale one: its hashes are unknown)."""
        files = remote_files(remote.client_values, remote.client_stamp)
        if any(entry.sha256 is UNKNOWN for entry in files.values()):
            return None
        dirs = remote_dirs(remote.client_values, remote.client_stamp) or frozenset()
        return cls(remote.client_stamp, files, frozenset(paths), dirs)


def push_object(ctx: EngineContext, row: ObjectRow, carry: Carry | None = None) -> PushOutcome:
    """Commit ``row``'s local changes as a new version; nothing when there is nothing to commit. ``carry``: this
    cycle's pull of the object left some paths unmerged (see :class:`Carry`)."""
    outcome = PushOutcome()
    if row.status != STATUS_NEW and not right_grants(row.csh_access_right, "U"):
        outcome.readonly = True
        _report_readonly(ctx, row)
        ctx.repo.update_object(row.oaio_id, local_dirty=False)
        return outcome
    if row.remote_dirty and (carry is None or carry.stamp != row.client_stamp):
        return outcome  # the last pull of this object is unfinished: merging comes first
    commit = _prepare(ctx, row, carry if row.remote_dirty else None)
    if commit.carried and (clash := _carried_clash(commit.files, commit.carried)):
        log.info("%s: %s is a file and a folder until its merge; merging comes first", row.oaio_id, clash)
        return outcome  # such a manifest would stop every device's pull of that name (design §5)
    if not commit.changed and row.status != STATUS_NEW and row.local_values is None:
        ctx.repo.update_object(row.oaio_id, local_dirty=False)
        return outcome
    settings = ctx.settings
    if not row.delete_confirmed and is_mass_deletion(
        commit.deleted, commit.base_total, ratio=settings.mass_delete_ratio, minimum=settings.mass_delete_min
    ):
        reason = (
            f"{commit.deleted} of {commit.base_total} files were deleted here; "
            f"run `oaiod ctl confirm-delete {row.oaio_id}` to delete them on the server too"
        )
        if row.status != STATUS_HELD:
            log.warning("%s: holding a mass deletion: %s", row.oaio_id, reason)
            ctx.repo.add_history(row.oaio_id, "held", detail=reason)
        ctx.repo.update_object(row.oaio_id, status=STATUS_HELD, hold_reason=reason)
        outcome.held = True
        return outcome
    return _commit(ctx, row, commit, outcome)


def _report_readonly(ctx: EngineContext, row: ObjectRow) -> None:
    """Local edits of a read-only object stay here; each changed path is reported once (``ctl conflicts``)."""
    changed = [
        file.path
        for file in ctx.repo.iter_files(row.oaio_id)
        if (file.sha256 if file.present else None) != file.synced_sha256
    ]
    for path in changed:
        if not ctx.repo.has_conflict(row.oaio_id, "readonly", path):
            log.warning(
                "%s: %s changed here, but the object is read-only; kept locally, not uploaded", row.oaio_id, path
            )
            ctx.repo.add_conflict(row.oaio_id, "readonly", path, detail="changed here, but the object is read-only")


BUMP_SPREAD = 1_000_000  #: microseconds past the newest stamp a commit may land on when the clock is behind it


class CarriedFileLost(Exception):
    """A path the pull could not merge is missing from the server's version on storage: the commit cannot carry
    it (the content is the server's, which only storage had; a local file is not it). Dropped before any upload
    and tried next cycle, without a backoff of the object, which would stop its pulls too: a newer version of the
    server (the device that has the file commits, and puts it back) is merged at once (sim seed 45 uploaded its
    other files every 5 s, each try ending as 'changed since it was indexed')."""


def new_stamp(*older: str) -> str:
    """A stamp newer than every one of ``older``: the clock, or, when the clock is not past the newest (the base
    was stamped by a device whose clock runs ahead, within the allowed skew), a random point in the second after it.

    Never simply one microsecond past the base: the stamp names the storage folder the commit's files are put in
    before the commit point, so every device building on the same base would share that folder. One writes its
    files over the other's; the one that loses the commit race deletes the folder (:func:`_abandon`), and with it
    the files of the version that won (sim seed 45: a version 40 s ahead, then every later commit lost its files).
    Drawn at random, two devices meet only one time in a million such races."""
    stamp = now_stamp()
    newest = max(older, default="")
    if stamp <= newest:
        stamp = stamp_add(newest, (1 + secrets.randbelow(BUMP_SPREAD)) / 1e6)
    return stamp


def _prepare(ctx: EngineContext, row: ObjectRow, carry: Carry | None = None) -> _Commit:
    """The new manifest (one object's files in memory, as design allows) and where each file comes from. The base
    is the synced version, or with ``carry`` the server's version the pull merged all but a few paths of."""
    stamp = new_stamp(row.client_stamp, row.synced_stamp)
    copy_base = carry.stamp if carry is not None else row.synced_stamp
    files: dict[str, list[Any]] = {}
    sources: dict[str, str | None] = {}
    base_by_sha: dict[str, str] = {}
    pending: list[tuple[str, str]] = []
    gone: list[str] = []  # base sha256 of each deleted file
    base_total = 0
    changed = False
    ctx.progress.queued_uploads = ctx.progress.queued_upload_bytes = 0
    indexed: set[str] = set()
    base_paths = set(carry.remote) if carry is not None else set(row.synced_values.get(FILES_VALUES_KEY) or [])
    for path, present, size, mtime_ns, sha, executable, synced_sha, synced_executable in ctx.repo.iter_push_rows(
        row.oaio_id
    ):
        if carry is not None:
            indexed.add(path)
            if path in carry.paths:
                continue  # as the server has it: below
            remote = carry.remote.get(path)  # the base of a carried commit is the server's version
            synced_sha = str(remote.sha256) if remote is not None else None
            synced_executable = int(remote.executable) if remote is not None else 0
        if synced_sha is not None:
            base_total += 1
            base_paths.add(path)
            base_by_sha.setdefault(synced_sha, path)
        if not present or sha is None:
            if synced_sha is not None:
                gone.append(synced_sha)
            changed = changed or synced_sha is not None
            continue
        files[path] = [size, mtime_ns, sha, bool(executable)]
        if sha == synced_sha and copy_base:
            sources[path] = path
            changed = changed or bool(executable) != bool(synced_executable)
        else:
            changed = True
            pending.append((path, sha))
    if carry is not None:
        for path, remote in carry.remote.items():
            if path in carry.paths:
                files[path] = [remote.size, remote.mtime_ns, str(remote.sha256), remote.executable]
                sources[path] = path
            elif path not in indexed:
                changed = True  # in the server's version, with no row here: left out, so deleted
    for path, sha in pending:
        sources[path] = base_by_sha.get(sha) if copy_base else None
        if sources[path] is None:
            ctx.progress.queued_uploads += 1
            ctx.progress.queued_upload_bytes += files[path][0]
    kept = {entry[2] for entry in files.values()}
    deleted = sum(1 for sha in gone if sha not in kept)  # a moved or renamed file is not a deletion
    carried = carry.paths if carry is not None else frozenset()
    base_dirs = carry.dirs if carry is not None else remote_dirs(row.synced_values, row.synced_stamp)
    dirs = _empty_dirs(ctx, row, files, base_dirs or frozenset())
    changed = changed or set(dirs) != (base_dirs or set())
    return _Commit(stamp, files, sources, deleted, base_total, changed, copy_base, carried, dirs, frozenset(base_paths))


def _carried_clash(files: dict[str, list[Any]], carried: frozenset[str]) -> str | None:
    """A carried path that would be a file and a folder of one version (the server's file where a folder stands
    here, or the reverse: the merge that settles it is the one that failed), or None."""
    holding = folders_of(files)
    for path in carried:
        if path in files and (path in holding or any(folder in files for folder in folders_of([path]))):
            return path
    return None


def _empty_dirs(ctx: EngineContext, row: ObjectRow, files: dict[str, list[Any]], base: frozenset[str]) -> list[str]:
    """The empty folders of the new version (design §1): as indexed, and the base's that are ignored or excluded
    here (the index never sees them: carried on as the server has them). One that holds a file of the version is
    not empty (the index has not seen that file's folder since)."""
    if row.kind not in (KIND_ROOT, KIND_FOLDER) or not row.local_root:
        return []
    rules = ctx.ignore_rules(Path(row.local_root))
    found = ctx.repo.empty_dirs(row.oaio_id) | {path for path in base if rules.covers(path)}
    if not found:
        return []  # the usual case: no pass over every path of the version
    holding = folders_of(files)
    return sorted(path for path in found if path not in files and path not in holding)


def _commit(ctx: EngineContext, row: ObjectRow, commit: _Commit, outcome: PushOutcome) -> PushOutcome:
    values, clashes = _new_values(ctx, row, commit)
    mine, theirs = dict(row.local_values or {}), dict(row.client_values)  # the clashing values, before _record
    entry = ctx.repo.journal_add(COMMIT, row.oaio_id, commit.stamp, row.synced_stamp, {"csh_id": row.csh_id})
    backend = ctx.backend(row.csh_id) if commit.files else None
    root = Path(row.local_root) if row.local_root else None
    try:
        if commit.sources:
            assert backend is not None and root is not None
            _put_files(ctx, backend, root, row, commit, outcome)
            backend.flush()  # every file of the version durable before the commit point names it
        obj = _version_object(ctx, row, commit.stamp, values)
        answer = ctx.api.register(obj) if row.status == STATUS_NEW else ctx.api.upload(obj)
    except UploadConflict as exc:
        won = exc.server_object.client_stamp if exc.server_object is not None else ""
        if won == commit.stamp:  # the version that won has this very stamp: its files are in that folder too
            log.warning("%s: another device committed version %s, this commit's stamp; its folder is kept",
                        row.oaio_id, won)  # fmt: skip
            backend = None
        _abandon(ctx, backend, row.oaio_id, commit.stamp, entry)
        log.info("%s: another device committed first (%s); merging and trying again", row.oaio_id, exc)
        outcome.conflict = exc.server_object
        return outcome
    except (LocalChanged, CarriedFileLost) as exc:
        _abandon(ctx, backend, row.oaio_id, commit.stamp, entry)
        log.info("%s: %s; committing next cycle", row.oaio_id, exc)
        return outcome
    except BaseException:
        # the journal row stays: recovery at the next start deletes the partial prefix (or finds it committed)
        raise
    _record(ctx, row, commit, answer, entry)
    # recorded once the version that overwrote the server's values is committed (a lost race merges and retries)
    record_clashes(ctx, row.oaio_id, clashes, mine, theirs, kept_local=True)
    outcome.committed = commit.stamp
    return outcome


def _put_files(
    ctx: EngineContext, backend: Backend, root: Path, row: ObjectRow, commit: _Commit, outcome: PushOutcome
) -> None:
    """Step 2: the base version's unchanged files carried forward (:func:`_carry_base`: on the hub one request
    whatever the folder's size), renamed and copied ones with one ``copy_many``, then the uploads with ``put_many``
    in bounded batches. The first failure stops the commit (the journal row covers the partial prefix)."""
    new = storage_key(row.oaio_id, commit.stamp)
    base = storage_key(row.oaio_id, commit.copy_base) if commit.copy_base else ""  # no base: nothing to copy
    same = {path for path, source in commit.sources.items() if source == path} if base else set()
    exclude = commit.base_paths - same
    missing: list[str] = []
    if same and len(exclude) <= len(same):  # else naming the kept files is the smaller request
        missing, same = _carry_base(backend, base, new, same, exclude), set()
    copies = {  # keys joined here and checked once, in copy_many (storage_key per file took 1.2 s for 10,000)
        path: (f"{base}/{source}", f"{new}/{path}")
        for path, source in commit.sources.items()
        if source is not None and (source != path or path in same)
    }
    missing += _copy_from_base(backend, copies)
    if lost := sorted(set(missing) & commit.carried):
        raise CarriedFileLost(
            f"{lost[0]} of the server's version {commit.copy_base} is missing on storage ({len(lost)} unmerged"
            " file(s)), so this commit cannot carry it"
        )
    outcome.copied += sum(1 for source in commit.sources.values() if source is not None) - len(missing)
    uploads = [path for path, source in commit.sources.items() if source is None] + missing
    folder = str(root)

    def send(batch: list[str]) -> list[Transferred]:
        # keys checked by put_many; the index's sha256 spares the Hub host a hashing pass before each large upload
        items = [Transfer(f"{new}/{path}", f"{folder}/{path}", sha256=commit.files[path][2]) for path in batch]
        total = sum(commit.files[path][0] for path in batch)
        ctx.progress.start(batch[0], total, len(batch), upload=True)
        try:
            return backend.put_many(items, progress=ctx.progress.advance, unpublished=True)  # named at commit
        finally:
            ctx.progress.finish(True, total, len(batch))

    batches = transfer_batches(uploads, lambda path: commit.files[path][0])
    limit = min(TRANSFER_PIPELINE, backend.capabilities.max_connections)
    # several batches in flight; each checked in order, and a failure leaves only after the others ended
    with contextlib.closing(in_flight(batches, send, limit)) as sent:
        for batch, results in sent:
            for path, result in zip(batch, results, strict=True):
                _check_upload(root, path, commit.files[path], result)
            outcome.uploaded += len(batch)


def _check_upload(root: Path, path: str, entry: list[Any], result: Transferred) -> None:
    """An upload counts only if it read the file as indexed (size, mtime and, when hashed on the way, content);
    LocalChanged when the user changed it since (this commit is dropped and retried next cycle)."""
    if isinstance(result.error, LocalFileChanged):
        raise LocalChanged(f"{root / path} changed while it was uploaded")
    if result.error is not None:
        raise result.error
    size, mtime_ns, sha = entry[0], entry[1], entry[2]
    if (result.size, result.mtime_ns) != (size, mtime_ns) or result.sha256 not in (None, sha):
        raise LocalChanged(f"{root / path} changed since it was indexed")


def _carry_base(backend: Backend, base: str, new: str, same: set[str], exclude: frozenset[str]) -> list[str]:
    """Copy the base version's files at ``same`` (their paths unchanged) to the new version with one
    ``copy_prefix`` that leaves out ``exclude`` (the base's other files); the paths to upload instead.

    The base's folder on storage should hold exactly its manifest's files, which is what the count says. When it
    does not — a file missing on storage, or one its manifest does not name (another client's leftovers) — the new
    folder is listed and made exact: a file left over there deleted, a missing one uploaded. (Both at once in equal
    numbers would pass the count: a leftover file in a version, not a lost one, which ``gc`` does not mind.)"""
    try:
        copied = backend.copy_prefix(base, new, exclude=exclude)
    except ObjectNotFound:
        copied = -1  # the base's folder is not readable: every file of it goes through the listing below
    if copied == len(same):
        return []
    cut = len(new) + 1
    held = {info.key[cut:] for info in backend.list(new)}
    log.info("%s holds %d files, not the %d its manifest names; uploading %d again", base, copied, len(same),
             len(same - held))  # fmt: skip
    for extra in sorted(held - same):
        backend.delete(f"{new}/{extra}")
    return sorted(same - held)


MISSING_ROUNDS = 3  #: copy_many calls that may each find a base file missing before copying goes one by one


def _copy_from_base(backend: Any, copies: dict[str, tuple[str, str]]) -> list[str]:
    """Copy every ``path -> (src, dst)`` of ``copies`` with one ``copy_many``; the paths whose base file is missing
    on storage (to upload instead). After a missing source (``ObjectNotFound`` names it) the rest is copied again
    (``copy_many`` is idempotent); after :data:`MISSING_ROUNDS` of them, one file at a time."""
    pending = dict(copies)
    missing: list[str] = []
    for _round in range(MISSING_ROUNDS):
        try:
            backend.copy_many(list(pending.values()))
            return missing
        except ObjectNotFound as exc:
            lost = [path for path, (src, _dst) in pending.items() if src == exc.key]
            if not lost:
                raise
            log.info("%s is missing on storage; uploading %s again", exc.key, lost[0])
            missing += lost
            for path in lost:
                del pending[path]
    for path, (src, dst) in pending.items():
        if not _copy(backend, src, dst):
            missing.append(path)
    return missing


def _new_values(ctx: EngineContext, row: ObjectRow, commit: _Commit) -> tuple[dict[str, Any], list[str]]:
    """The new version's values, and the keys where this device's value replaces one the server changed too
    (local values merged over the server's newer version, design §5: the newer side's value stays)."""
    base = dict(row.client_values)
    clashes: list[str] = []
    if row.local_values is not None:
        base, clashes = merge_values(row.synced_values, row.local_values, base, local_newer=True)
    if row.kind != KIND_DATA:
        base[FILES_VALUES_KEY] = sorted(commit.files)
        files = {path: commit.files[path] for path in sorted(commit.files)}
        base[MANIFEST_KEY] = build_manifest(
            row.kind, commit.stamp, files, dirs=commit.dirs, confirmed_delete=row.delete_confirmed
        )
    return base, clashes


def _version_object(ctx: EngineContext, row: ObjectRow, stamp: str, values: dict[str, Any]) -> OaiObject:
    return OaiObject(
        oaio_id=row.oaio_id,
        client_stamp=stamp,
        server_stamp=row.client_stamp if row.status != STATUS_NEW else "",
        client_values=values,
        server_values=row.client_values if row.status != STATUS_NEW else {},
        csh_id=row.csh_id,
        username=ctx.settings.username,
        device_id=ctx.settings.device_id,
        app_id=ctx.settings.app_id,
        csh_access_right=row.csh_access_right or "C",
    )


def _copy(backend: Any, src: str, dst: str) -> bool:
    """Server-side copy of an unchanged file; False (upload instead) when the base file is missing on storage."""
    try:
        backend.copy(src, dst)
    except ObjectNotFound:
        log.info("%s is missing on storage; uploading it again", src)
        return False
    return True


def _abandon(ctx: EngineContext, backend: Any, oaio_id: str, stamp: str, entry: int) -> None:
    """Delete a commit's partial prefix and its journal row (the commit point was not reached)."""
    if backend is not None:
        try:
            backend.delete_prefix(storage_key(oaio_id, stamp))
        except StorageError as exc:
            log.warning("%s: cannot delete the partial version %s (%s); gc retries", oaio_id, stamp, exc)
            return
    ctx.repo.journal_remove(entry)


def _record(ctx: EngineContext, row: ObjectRow, commit: _Commit, answer: OaiObject, entry: int) -> None:
    """Step 4: the committed version becomes the base, in one transaction with the journal row's removal."""
    with ctx.repo.session() as s:
        mine = FileRow.path.not_in(commit.carried)  # a carried path's row keeps its base: the next pull merges it
        s.execute(
            sa.update(FileRow)
            .where(FileRow.oaio_id == row.oaio_id, FileRow.present.is_(True), FileRow.sha256.is_not(None), mine)
            .values(synced_sha256=FileRow.sha256, synced_executable=FileRow.executable, synced_stamp=commit.stamp)
        )
        s.execute(sa.delete(FileRow).where(FileRow.oaio_id == row.oaio_id, FileRow.present.is_(False), mine))
        fresh = s.get(ObjectRow, row.oaio_id)
        assert fresh is not None
        base = history.manifest_hashes(fresh.synced_values, fresh.synced_stamp)
        ctx.repo.apply_server_object(fresh, answer)
        fresh.synced_stamp, fresh.synced_values = answer.client_stamp, answer.client_values
        fresh.local_dirty, fresh.local_values, fresh.remote_dirty = False, None, bool(commit.carried)
        fresh.status, fresh.hold_reason, fresh.delete_confirmed = STATUS_ACTIVE, "", False
        s.execute(sa.delete(JournalRow).where(JournalRow.id == entry))
    ctx.repo.add_history(row.oaio_id, "commit", detail=f"version {commit.stamp}: {len(commit.files)} files")
    committed = {path: str(entry[2]) for path, entry in commit.files.items()}
    history.record_version(ctx.repo, row.oaio_id, base, committed, ctx.settings.device_id, skip=commit.carried)
    log.info("%s: committed version %s (%d files)", row.oaio_id, commit.stamp, len(commit.files))
