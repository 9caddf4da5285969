"""``SyncEngine``: all the daemon and ``ctl`` talk to (design §7). One cycle at a time (a lock), each step idempotent:

Before anything, the clocks: every stamp this device makes is compared with the server's, which refuses one more
than 69 s off; so the first cycle and then one every :data:`CLOCK_CHECK_INTERVAL` compare the two clocks, and a
cycle with clocks too far apart fails with :class:`~oaiod.server_api.ClockSkewError` (saying what to fix) before
it commits anything.

(When the engine is made: settle a pull's downloads that a kill left without index rows, from its journal row.)
0. recover interrupted commits (journal); 1. local index (dirty paths, or a full rescan when asked or at start);
2. pull (``stampz(since=cursor)``: one request when nothing changed); 3. push every object with local changes;
4. advance the cursor only when every pull of the cycle completed.

The client root object is adopted, created, switched and dropped by :class:`~oaiod.engine.roots.ClientRoot`
(design §1); the cycle tells it what the server lists.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from oaiod.engine import apps, files, history, modes, ops, selective, trash
from oaiod.engine.context import EngineContext, OpenBackend, ServerApi
from oaiod.engine.index import IndexReport, index_paths, owner_of, rooted, settle_ignored
from oaiod.engine.mapping import is_own_root, map_object
from oaiod.engine.placeholders import PathMapper
from oaiod.engine.plan import CONFLICT_MARK, parse_conflict_name
from oaiod.engine.pull import PullOutcome, pull_object
from oaiod.engine.push import Carry, PushOutcome, push_object
from oaiod.engine.recovery import recover_commits, recover_installs
from oaiod.engine.roots import ClientRoot
from oaiod.engine.settings import EngineSettings
from oaiod.engine.status import CycleReport, EngineStatus, Listing
from oaiod.errors import OaiodError, ValidationError
from oaiod.model import OaiObject, now_stamp
from oaiod.server_api import ObjectVersion, ProtocolError, RejectedObject, RemoteError
from oaiod.state.backoff import RETRIED_AFTER_LOCAL_CHANGE
from oaiod.state.models import (
    KIND_DATA,
    KIND_FILES,
    KIND_ROOT,
    MODE_RECEIVE_ONLY,
    MODE_SEND_ONLY,
    MODES,
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_NEW,
    STATUS_REMOVED,
    ConflictRow,
    HistoryRow,
    ObjectRow,
)
from oaiod.state.repo import StateRepo
from oaiod.storage.errors import StorageError

log = logging.getLogger("oaiod.engine")

_NEW_RECEIVE_ONLY = (
    "a folder not on the server yet has nothing to receive; add it as send-receive or send-only, "
    "then `oaiod ctl mode OBJ receive-only` once it is registered"
)
CLOCK_CHECK_INTERVAL = 600.0  #: seconds between two comparisons of the local clock with the server's


class SyncEngine:
    """Syncs this device's folders with one oaio server (see the module docstring and design §3–§5)."""

    def __init__(
        self, config: EngineSettings, repo: StateRepo, server_api: ServerApi, open_backend: OpenBackend
    ) -> None:
        self.settings = config
        self.repo = repo
        self.api = server_api
        mapper = PathMapper(config.client_root, config.state_dir, home=config.home, placeholders=config.placeholders)
        self.ctx = EngineContext(config, repo, server_api, open_backend, mapper)
        self.server_key = server_api.base_url or "server"
        self._lock = threading.RLock()
        self._dirty_lock = threading.Lock()
        self._dirty: set[Path] = set()
        self._full_rescan = True
        self.client_root = ClientRoot(self.ctx)
        self._carry: dict[str, Carry] = {}  # this cycle's pulls that left a few paths unmerged (push.Carry)
        self._restore: dict[str, set[str]] = {}  # oaio_id -> files no longer ignored, deleted meanwhile
        self._modes_applied = False  # the config's folder modes: applied at the first cycle, again for a new folder
        self._retry_failed = True  # a new start (or reload: new credentials?) tries every backed-off item once
        self._clock_checked = -CLOCK_CHECK_INTERVAL  # time.monotonic() of the last good clock comparison
        self.state = "idle"
        self.last_sync = ""
        self.last_report: CycleReport | None = None
        self.symlinks: set[str] = set()
        Path(config.client_root).mkdir(parents=True, exist_ok=True)
        recover_installs(self.ctx)  # before the daemon sweeps temp files: they tell a rename that never ran

    @property
    def progress(self) -> Any:
        """Current transfer and queued bytes (:class:`~oaiod.engine.context.Progress`)."""
        return self.ctx.progress

    # -- the daemon's inputs ------------------------------------------------------------------------------------

    def pending_paths(self) -> int:
        """Paths marked dirty and not looked at yet (what waits while paused)."""
        with self._dirty_lock:
            return len(self._dirty)

    def mark_dirty(self, root: Path, paths: Iterable[Path | str]) -> None:
        """Paths (absolute, or relative to ``root``) that changed on disk; thread-safe, looked at next cycle."""
        with self._dirty_lock:
            for path in paths:
                path = Path(path)
                self._dirty.add(path if path.is_absolute() else Path(root) / path)

    def local_changes_left(self) -> int:
        """How many changed paths wait for the next cycle (those still being written when the last one looked)."""
        with self._dirty_lock:
            return len(self._dirty) + int(self._full_rescan)

    def retry_failed(self) -> None:
        """Let the next cycle try every backed-off item at once (``ctl sync``); thread-safe, takes no lock."""
        self._retry_failed = True

    def rescan(self) -> IndexReport:
        """A full stat walk of every root now (hashes only what changed); marks changed objects for the next push."""
        with self._lock:
            self._full_rescan = True
            return self._index_local()

    def roots(self) -> list[Path]:
        """Every local folder synced (the client root first), for the watcher."""
        rows = [row for row in self.repo.objects(STATUS_ACTIVE, STATUS_NEW, "held", values=False) if row.local_root]
        roots = [Path(self.settings.client_root)]
        roots += sorted({Path(row.local_root) for row in rows if row.local_root} - {roots[0]})
        return roots

    # -- the cycle --------------------------------------------------------------------------------------------------

    def sync_cycle(self) -> CycleReport:
        """One sync cycle; RemoteError/StorageError of the whole cycle (offline…) propagate for the scheduler's
        backoff, per-object failures are recorded and reported in ``CycleReport.errors``."""
        with self._lock:
            report = CycleReport(started=now_stamp())
            self.state = "syncing"
            self.ctx.progress.reset()
            try:
                self._check_clock()
                if not self._modes_applied:
                    self._apply_config_modes()
                recover_commits(self.ctx)  # a commit whose answer was lost is decided before anything is merged
                if self._retry_failed:
                    self._retry_failed = False
                    if retried := self.repo.retry_errors():
                        log.info("trying %d backed-off item(s) again now", retried)
                report.hashed = self._index_local().hashed
                self._carry.clear()
                cursor_ok, sync_stamp = self._pull_all(report)
                if not self._modes_applied:  # a folder new here takes its configured mode before any push
                    self._apply_config_modes()
                if self._full_rescan:  # the client root was just adopted or created: index it before pushing
                    report.hashed += self._index_local().hashed
                self._restore_unignored(report)
                self._push_all(report)
                self.client_root.drop_superseded()
                if cursor_ok and sync_stamp:
                    self.repo.set_cursor(self.server_key, sync_stamp)
            except (RemoteError, StorageError, OaiodError) as exc:
                self.state = "offline" if exc.transient else "error"
                raise
            report.finished = now_stamp()
            report.ok = report.ok and not report.errors
            self.state = "idle" if report.ok else "error"
            self.last_sync, self.last_report = report.finished, report
            return report

    def _check_clock(self) -> None:
        """:class:`~oaiod.server_api.ClockSkewError` when the clocks differ by more than the server accepts."""
        if time.monotonic() - self._clock_checked < CLOCK_CHECK_INTERVAL:
            return
        skew = self.api.check_clock()
        self._clock_checked = time.monotonic()
        if abs(skew) > 5:
            log.info("the server's clock is %+.0f s ahead of this device's (the server accepts up to 69 s)", skew)

    def _index_local(self) -> IndexReport:
        total = IndexReport()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            full, self._full_rescan = self._full_rescan, False
        if not dirty and not full:
            return total  # an idle cycle reads no object or file row
        try:
            return self._index(dirty, full, total)
        except BaseException:  # a full disk, the state database: what this walk took is walked again next cycle
            with self._dirty_lock:
                self._dirty |= dirty
                self._full_rescan = self._full_rescan or full
            raise

    def _index(self, dirty: set[Path], full: bool, total: IndexReport) -> IndexReport:
        rows = self.repo.objects(STATUS_ACTIVE, STATUS_NEW, "held", values=False)
        # only an app's file object needs its values (the listed files); a folder's hold a manifest of every file
        rows = [self.repo.get_object(row.oaio_id) or row if row.kind == KIND_FILES else row for row in rows]
        roots = rooted(rows)
        excluded = ops.live_exclusions(self.ctx)
        targets: dict[str, tuple[ObjectRow, list[str]]] = {row.oaio_id: (row, [""]) for _root, row in roots}
        if not full:  # only the dirty paths, grouped by the object owning them
            targets = {}
            for path in dirty:
                owner = owner_of(path, roots)
                if owner is not None:
                    targets.setdefault(owner[0].oaio_id, (owner[0], []))[1].append(owner[1])
        for row, prefixes in targets.values():  # one pass and one transaction per object, however many paths
            report = index_paths(self.ctx, row, roots, prefixes, excluded)
            for oaio_id in report.dirty_objects:  # a local change may be what a quota or permission failure waits for
                self.repo.retry_errors(oaio_id, RETRIED_AFTER_LOCAL_CHANGE)
            total.hashed += report.hashed
            total.unstable += report.unstable
            for oaio_id, paths in report.restore.items():
                self._restore.setdefault(oaio_id, set()).update(paths)
            for link in report.symlinks:
                if str(link) not in self.symlinks:
                    self.symlinks.add(str(link))
                    log.warning("%s is a symlink; oaiod does not follow or sync symlinks", link)
        if total.unstable:
            self.mark_dirty(Path("/"), total.unstable)  # still being written: next cycle
        return total

    def _pull_all(self, report: CycleReport) -> tuple[bool, str]:
        cursor = self.repo.cursor(self.server_key) or None
        listing = self.api.stampz(cursor)
        has_root = self.repo.has_kind(KIND_ROOT)
        if has_root and not (listing.objects or listing.deleted_ids or listing.full or listing.rejected):
            return True, listing.sync_stamp  # nothing changed: no object row is read
        known = {row.oaio_id: row for row in self.repo.objects()}
        if not has_root:
            self.client_root.adopt_or_create(listing.objects if listing.full else self.api.stampz(None).objects)
            self._modes_applied = False
            known = {row.oaio_id: row for row in self.repo.objects()}
            self._full_rescan = True
        complete = self._refuse_rejected(listing.rejected, report)
        for obj in sorted(listing.objects, key=lambda o: o.oaio_id not in known or known[o.oaio_id].kind != KIND_ROOT):
            complete = self._pull_one(obj, known, report) and complete
        gone = set(listing.deleted_ids)
        if listing.full:  # a rejected object is still listed: not gone
            listed = {obj.oaio_id for obj in listing.objects} | {item.oaio_id for item in listing.rejected}
            gone |= {oid for oid, row in known.items() if oid not in listed and row.status != STATUS_NEW}
        root = self.client_root.row()
        if root is not None and root.oaio_id in gone:
            complete = self._replace_deleted_root(root, report) and complete
            gone.discard(root.oaio_id)
        for oaio_id in gone:
            ops.forget_object(self.ctx, oaio_id, "no longer on the server or no longer shared with you")
        return complete, listing.sync_stamp

    def _refuse_rejected(self, rejected: list[RejectedObject], report: CycleReport) -> bool:
        """Objects the server listed in an invalid form fail alone, as a failed pull does: reported, backed off,
        and nothing of them touches the disk, while every other object syncs. False when there was one (the cursor
        stays: it is listed again, and pulled once the server sends it valid)."""
        for item in rejected:
            key = f"obj:{item.oaio_id}" if item.oaio_id else f"listing:{self.server_key}"
            if self.repo.backing_off(key):
                continue
            log.warning("%s: not synced, %s; backing off", item.oaio_id or "an object without a valid id", item.reason)
            self.repo.record_error(key, ProtocolError(item.reason), what="pull", oaio_id=item.oaio_id or "")
            report.errors.append(f"{item.oaio_id or 'an object without a valid id'}: {item.reason}")
        return not rejected

    def _pull_one(self, obj: OaiObject, known: dict[str, ObjectRow], report: CycleReport) -> bool:
        """Merge one listed object; its failure (placing it here included) is recorded and backed off alone."""
        row = known.get(obj.oaio_id)
        if row is None and is_own_root(obj, self.settings.username):
            row = self.client_root.meet(obj, known)
            if row is None:
                return True
        if row is not None and row.status == STATUS_REMOVED:
            return True
        if self.repo.backing_off(f"obj:{obj.oaio_id}"):
            return False
        try:
            if row is None:
                row = known[obj.oaio_id] = self._place_new(obj, known)
            outcome = self._pull(row, obj)
        except (RemoteError, StorageError, OaiodError) as exc:
            log.warning("%s: pull failed (%s); backing off", obj.oaio_id, exc)
            self.repo.record_error(f"obj:{obj.oaio_id}", exc, what="pull", oaio_id=obj.oaio_id)
            report.errors.append(f"{obj.oaio_id}: {exc}")
            return False
        self._account_pull(outcome, obj.oaio_id, report)
        partly = not outcome.complete and not outcome.held and outcome.failed and row.local_root
        if partly and (carry := Carry.of(obj, outcome.failed)):  # only some paths failed: the push may commit the rest
            self._carry[obj.oaio_id] = carry
        return outcome.complete or outcome.held

    def _place_new(self, obj: OaiObject, known: dict[str, ObjectRow]) -> ObjectRow:
        """Decide where an object new to this device lives (design §1) and store its row."""
        kind, local_root = map_object(self.ctx, obj, list(known.values()))
        row = ObjectRow(oaio_id=obj.oaio_id, kind=kind, local_root=str(local_root) if local_root else None)
        row.synced_values, row.status = {}, STATUS_ACTIVE
        self.repo.apply_server_object(row, obj)
        row = self.repo.save_object(row)
        self._modes_applied = not self.settings.folder_modes
        if local_root is not None and self.repo.include_folder(str(local_root)):
            log.info("%s is no longer excluded: it is the folder of %s now", local_root, obj.oaio_id)
        log.info("new object %s (%s) at %s", obj.oaio_id, kind, local_root or "the state database")
        return row

    def _pull(self, row: ObjectRow, obj: OaiObject) -> PullOutcome:
        """Merge ``obj`` into ``row``; ignored files changed here keep the local file (design §6). A send-only
        folder only records the server's version (:mod:`~oaiod.engine.modes`)."""
        if modes.keeps_server_changes_out(row):
            modes.record_server_version(self.ctx, row, obj)
            return PullOutcome()
        kept = settle_ignored(self.ctx, row, obj) if row.local_root and obj.client_stamp != row.synced_stamp else []
        outcome = pull_object(self.ctx, row, obj)
        outcome.conflicts += kept
        return outcome

    def _restore_unignored(self, report: CycleReport) -> None:
        """Files no longer ignored that were deleted while they were come back from the synced version."""
        pending, self._restore = self._restore, {}
        for oaio_id, paths in pending.items():
            failed = ops.restore_unignored(self.ctx, oaio_id, sorted(paths))
            report.downloads += len(paths) - len(failed)
            if failed:
                report.errors.append(f"{oaio_id}: {len(failed)} file(s) no longer ignored not restored yet")
                self._restore[oaio_id] = set(failed)

    def _account_pull(self, outcome: PullOutcome, oaio_id: str, report: CycleReport) -> None:
        report.pulled += int(outcome.merged)
        report.downloads += outcome.downloads
        report.local_copies += outcome.local_copies
        report.trashed += outcome.trashed
        report.conflicts += outcome.conflicts
        report.errors += [f"{oaio_id}: {e}" for e in outcome.errors]
        if outcome.held:
            report.held.append(oaio_id)
        if outcome.retry_paths:
            self.mark_dirty(Path("/"), outcome.retry_paths)

    def _push_all(self, report: CycleReport) -> None:
        for row in self.repo.dirty_objects():
            if self.repo.backing_off(f"obj:{row.oaio_id}") or not modes.may_push(row):
                continue  # a receive-only folder's local changes stay here (modes)
            for _attempt in range(self.settings.commit_attempts):
                override = row.mode == MODE_SEND_ONLY and modes.override_pending(self.ctx, row.oaio_id)
                carry = modes.push_carry(self.ctx, row, override) or self._carry.pop(row.oaio_id, None)
                try:
                    outcome = push_object(self.ctx, row, carry)
                except (RemoteError, StorageError, OaiodError) as exc:
                    log.warning("%s: push failed (%s); backing off", row.oaio_id, exc)
                    self.repo.record_error(f"obj:{row.oaio_id}", exc, what="push", oaio_id=row.oaio_id)
                    report.errors.append(f"{row.oaio_id}: {exc}")
                    break
                if outcome.committed and override:
                    modes.drop_override(self.ctx, row.oaio_id)
                if not self._account_push(outcome, row, report):
                    break
                fresh = self.repo.get_object(row.oaio_id)
                if fresh is None:
                    break
                row = fresh

    def _account_push(self, outcome: PushOutcome, row: ObjectRow, report: CycleReport) -> bool:
        """Count a push; True when it lost a race (409) and was merged, so the caller commits again."""
        report.uploads += outcome.uploaded
        report.copies += outcome.copied
        if outcome.committed:
            report.pushed += 1
            self.repo.clear_error(f"obj:{row.oaio_id}")
        if outcome.held:
            report.held.append(row.oaio_id)
        if outcome.conflict is None:
            return False
        pulled = self._pull(row, outcome.conflict)
        self._account_pull(pulled, row.oaio_id, report)
        return pulled.complete

    def _replace_deleted_root(self, current: ObjectRow, report: CycleReport) -> bool:
        """Our client root object was deleted on the server: switched to another (pulled now) or a new one."""
        row, obj = self.client_root.replace_deleted(current)
        return obj is None or self._pull_one(obj, {row.oaio_id: row}, report)

    # -- ctl operations (see ops) -----------------------------------------------------------------------------

    def add_folder(self, path: Path, mode: str = "") -> str:
        """Sync a folder: a new object, or the one ``ctl remove`` stopped syncing there (listed again in full by
        the next cycle, so its server version is merged); ``mode``: its folder type (:mod:`modes`)."""
        with self._lock:
            if mode:
                modes.check_mode(mode)
            oaio_id = ops.resume_removed(self.ctx, Path(path))
            if oaio_id is not None:
                self.repo.set_cursor(self.server_key, "")
            else:
                if mode == MODE_RECEIVE_ONLY and not self._synced_at(Path(path)):
                    raise ValidationError("mode", _NEW_RECEIVE_ONLY)
                oaio_id = ops.add_folder(self.ctx, Path(path))
            if mode:
                self.set_mode(oaio_id, mode)
            self._modes_applied = not self.settings.folder_modes
            self._full_rescan = True
            return oaio_id

    # -- folder types (modes) ---------------------------------------------------------------------------------

    def set_mode(self, oaio_id: str, mode: str) -> str:
        """Make ``oaio_id`` send-receive, send-only or receive-only; the previous mode. Leaving send-only lists
        every object again, so the server's changes kept out are merged at the next cycle."""
        with self._lock:
            row = self._folder(oaio_id)
            old = row.mode
            if old == modes.check_mode(mode):
                return old
            if mode == MODE_RECEIVE_ONLY and row.status == STATUS_NEW:
                raise ValidationError("mode", _NEW_RECEIVE_ONLY)
            self.repo.update_object(oaio_id, mode=mode, local_dirty=True)
            self.repo.add_history(oaio_id, "mode", row.local_root or "", f"{old} -> {mode}")
            if old == MODE_SEND_ONLY:
                modes.drop_override(self.ctx, oaio_id)
                self.repo.set_cursor(self.server_key, "")
            return old

    def override(self, oaio_id: str) -> str:
        """``ctl override``: the next push of a send-only folder commits every path as it is here, replacing the
        server's changes (which stay in the server's versions); says what happens."""
        with self._lock:
            row = self._folder(oaio_id)
            if row.mode != MODE_SEND_ONLY:
                raise ValidationError("oaio_id", f"{oaio_id} is {row.mode}; override is for a send-only folder")
            if not row.remote_dirty:
                return "nothing to override: the server has no changes that are not applied here"
            count = len(modes.server_changes(self.ctx, row))
            modes.request_override(self.ctx, oaio_id)
            self.repo.update_object(oaio_id, local_dirty=True)
            self.repo.add_history(oaio_id, "override", row.local_root or "", f"{count} files")
            return f"the next sync replaces {count} server changes with this device's files (kept in versions)"

    def revert(self, oaio_id: str) -> list[str]:
        """``ctl revert``: a receive-only folder gets the synced version back; every local change goes to the
        trash first (added files moved there, changed ones replaced). Returns the paths put back or trashed."""
        with self._lock:
            row = self._folder(oaio_id)
            if row.mode != MODE_RECEIVE_ONLY:
                raise ValidationError("oaio_id", f"{oaio_id} is {row.mode}; revert is for a receive-only folder")
            assert row.local_root is not None
            trashed = modes.trash_local_additions(self.ctx, row)
            restored = ops.restore(self.ctx, oaio_id, row.synced_stamp, None) if row.synced_stamp else []
            self.mark_dirty(Path(row.local_root), trashed + restored)
            self._index_local()
            self.repo.add_history(oaio_id, "revert", row.local_root, f"{len(trashed) + len(restored)} files")
            return sorted(trashed + restored)

    def mode_notes(self) -> dict[str, str]:
        """``oaio_id -> what its mode keeps apart from the server`` for every folder where that is something."""
        rows = self.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False)
        notes = {row.oaio_id: modes.note(self.ctx, row) for row in rows if row.mode in MODES[1:]}
        return {oaio_id: text for oaio_id, text in notes.items() if text}

    def _synced_at(self, path: Path) -> bool:
        """True when a folder at ``path`` is already synced and on the server."""
        rows = self.repo.objects(STATUS_ACTIVE, STATUS_HELD, values=False)
        return any(row.local_root and Path(row.local_root).resolve() == path.resolve() for row in rows)

    def _folder(self, oaio_id: str) -> ObjectRow:
        row = self.repo.get_object(oaio_id)
        if row is None or not row.local_root or row.status == STATUS_REMOVED:
            raise ValidationError("oaio_id", f"{oaio_id} is not a folder synced here")
        return row

    def _apply_config_modes(self) -> None:
        """The config's ``folder_modes`` (folder path -> mode) win over the stored mode: at a start, and when a
        folder is new here (before its first push)."""
        self._modes_applied = True
        wanted = {str(Path(path).expanduser().resolve()): mode for path, mode in self.settings.folder_modes.items()}
        if not wanted:
            return
        for row in self.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False):
            mode = wanted.get(str(Path(row.local_root).resolve())) if row.local_root else None
            if mode is not None and mode != row.mode:
                self.set_mode(row.oaio_id, mode)

    def remove(self, oaio_id: str) -> None:
        """Stop syncing ``oaio_id`` on this device only (see :func:`oaiod.engine.ops.remove`)."""
        with self._lock:
            ops.remove(self.ctx, oaio_id)

    def exclude(self, path: Path, *, dry_run: bool = False) -> selective.Exclusion:
        """Stop holding ``path`` (a file or folder inside a synced folder) on this device (selective sync)."""
        with self._lock:
            row, rel = selective.locate(self.ctx, Path(path))
            return selective.exclude(self.ctx, row, rel, dry_run=dry_run)

    def include(self, path: Path) -> list[str]:
        """Hold an excluded ``path`` here again; its server files come back at the next cycle."""
        with self._lock:
            row, rel = selective.locate(self.ctx, Path(path))
            restore = selective.include(self.ctx, row, rel)
            if restore:
                self._restore.setdefault(row.oaio_id, set()).update(restore)
            return restore

    def trash(self) -> list[trash.TrashEntry]:
        """What the trash of every synced folder holds, newest day first."""
        return trash.entries(self.roots())

    def restore_trash(self, path: Path, day: str | None = None) -> list[str]:
        """Put the newest trashed copy of ``path`` (a file, or a folder's files) back in place."""
        with self._lock:
            restored = trash.restore(self.roots(), Path(path), day)
            self.mark_dirty(Path("/"), restored)
            return restored

    def exclusions(self) -> list[tuple[str, str]]:
        """``(folder, path)`` of every path excluded on this device."""
        folders = {row.oaio_id: row.local_root or "" for row in self.repo.objects(values=False)}
        return [(folders.get(oaio_id, ""), path) for oaio_id, path in self.repo.excluded_paths()]

    def delete(self, oaio_id: str) -> str:
        """Delete ``oaio_id`` for everybody (see :func:`oaiod.engine.ops.delete`); says what was done."""
        with self._lock:
            return ops.delete(self.ctx, oaio_id)

    def objects(self) -> Listing:
        """What ``ctl ls`` lists: the synced objects and the folders excluded from the folder around them."""
        listing = Listing(self.repo.objects(values=False), self.repo.excluded_folders(), self.repo.object_names())
        listing.values = {
            row.oaio_id: apps.current_values(row) for row in self.repo.objects_of_kind(KIND_DATA, KIND_FILES)
        }
        return listing

    def share(self, oaio_id: str, user: str, right: str) -> int:
        return int(self.api.subscribe(oaio_id, user, right))

    def unshare(self, oaio_id: str, user: str) -> int:
        return int(self.api.unsubscribe(oaio_id, user))

    def users(self, oaio_id: str) -> list[dict[str, str]]:
        return list(self.api.user_subz(oaio_id))

    def link(self, oaio_id: str, path: str, expires_in: int, password: str | None) -> dict[str, Any]:
        """A share link to ``path`` of the object (``""``: all of it), following its newest version."""
        return self.api.create_link(oaio_id, path, expires_in=expires_in, password=password)

    def links(self, oaio_id: str) -> list[dict[str, Any]]:
        return self.api.links(oaio_id)

    def revoke_link(self, link_id: str) -> dict[str, Any]:
        return self.api.revoke_link(link_id)

    def confirm_delete(self, oaio_id: str) -> None:
        """Let a held mass deletion of ``oaio_id`` proceed at the next cycle (after a running one: that cycle would
        set the cursor again over the reset that lists the held pull again)."""
        with self._lock:
            self.repo.update_object(oaio_id, delete_confirmed=True, local_dirty=True)
            row = self.repo.get_object(oaio_id)
            if row is not None:
                self.repo.add_history(oaio_id, "confirm", detail=row.hold_reason)
            self.repo.set_cursor(self.server_key, "")  # the held pull is listed again

    def set_values(self, oaio_id: str, values: dict[str, Any], unset: Iterable[str] = ()) -> None:
        """Change (and with ``unset`` delete) keys of an object's values, merged by key with the server's at the
        next push."""
        with self._lock:
            apps.set_values(self.ctx, oaio_id, values, unset)
            self.repo.retry_errors(oaio_id, RETRIED_AFTER_LOCAL_CHANGE)

    # -- objects of apps (see apps) ------------------------------------------------------------------------------

    def values(self, oaio_id: str) -> dict[str, Any]:
        """An object's values as this device has them (its uncommitted edits included)."""
        return apps.current_values(apps.synced_row(self.ctx, oaio_id))

    def new_object(self, values: dict[str, Any]) -> str:
        """A new data object, registered by the next cycle; its id."""
        with self._lock:
            return apps.new_data_object(self.ctx, values)

    def new_file_object(
        self, name: str, source: Path | None, root: Path | None = None, values: dict[str, Any] | None = None
    ) -> str:
        """A new file object holding ``source`` as ``name`` (see :func:`oaiod.engine.apps.new_file_object`)."""
        with self._lock:
            return apps.new_file_object(self.ctx, name, source, root, values or {})

    def update_file(self, oaio_id: str, name: str = "", source: Path | None = None) -> str:
        """A file object's file replaced (or added); committed by the next cycle. Its local path."""
        with self._lock:
            path = apps.update_file(self.ctx, oaio_id, name, source)
            self.repo.retry_errors(oaio_id, RETRIED_AFTER_LOCAL_CHANGE)
            return path

    def unregister(self, oaio_id: str, wipe_files: bool = False) -> str:
        """Delete an object for everybody (as ``ctl delete``); ``wipe_files`` also deletes its versions on the
        storage host and its files here. Says what was done."""
        with self._lock:
            row = apps.synced_row(self.ctx, oaio_id)
            if wipe_files:
                apps.check_wipe(self.ctx, row)
            done = ops.delete(self.ctx, oaio_id)
            if wipe_files:
                apps.wipe(self.ctx, row)
                done += "; its files were wiped"
            return done

    def conflicts(self) -> list[ConflictRow]:
        """What ``ctl conflicts`` lists: the conflicted copies that exist now, found in the index by their name —
        so every device lists the copies synced to it, and a copy deleted (the conflict resolved) is gone — then
        the other recorded conflicts that still stand (a read-only or ignored file that is still there, clashing
        values). A copy made here keeps the reason recorded when it was made."""
        recorded = self.repo.conflicts()
        reasons = {(row.oaio_id, row.copy_path): row for row in recorded if row.kind == "file"}
        found: list[ConflictRow] = []
        for oaio_id, copy in self.repo.files_named_like(CONFLICT_MARK):
            parsed = parse_conflict_name(copy)
            if parsed is None:
                continue
            original, device, when = parsed
            made = reasons.get((oaio_id, copy))
            detail = made.detail if made is not None else f"a conflicted copy made on {device} at {when}"
            created = made.created if made is not None else ""
            found.append(ConflictRow(oaio_id=oaio_id, kind="file", path=original, copy_path=copy, detail=detail,
                                     created=created))  # fmt: skip
        roots = {row.oaio_id: row.local_root for row in self.repo.objects(values=False)}
        for row in recorded:
            if row.kind == "file":
                continue
            root = roots.get(row.oaio_id)
            if row.kind in ("readonly", "ignored") and not (root and (Path(root) / row.path).exists()):
                continue  # the file is gone: nothing left to resolve
            found.append(row)
        return found

    def history(self, limit: int = 200, *, since: str = "", path: Path | None = None) -> list[HistoryRow]:
        """``ctl history``: the newest ``limit`` rows (per file, and object events; not the version totals) written
        at ``since`` (a stamp) or later, of ``path`` (a synced folder, a file or folder in one, or a folder holding
        synced folders) when given."""
        scopes = None if path is None else history.scopes_of(self.ctx, Path(path))
        return self.repo.history(limit, since=since, scopes=scopes, without=history.VERSION_TOTALS)

    def versions(self, oaio_id: str) -> list[ObjectVersion]:
        return list(self.api.versions(oaio_id))

    def file_status(self, path: Path) -> files.FileStatus:
        """What oaiod does with one file or folder now, and why (``ctl filestatus``)."""
        return files.status(self.ctx, Path(path))

    def file_versions(self, path: Path) -> list[files.FileVersion]:
        """The versions of one file the server keeps, one per change, newest first (``ctl versions PATH``)."""
        return files.versions(self.ctx, Path(path))

    def restore_path(self, path: Path, stamp: str, to: Path | None = None) -> list[str]:
        """Restore one file or folder inside a synced folder as version ``stamp`` had it (only what differs)."""
        row, rel = files.locate_file(self.ctx, Path(path))
        return self.restore(row.oaio_id, stamp, to, under=rel)

    def restore(self, oaio_id: str, stamp: str, to: Path | None = None, under: str = "") -> list[str]:
        with self._lock:
            restored = ops.restore(self.ctx, oaio_id, stamp, Path(to) if to else None, under)
            if to is None:
                row = self.repo.get_object(oaio_id)
                if row is not None and row.local_root:
                    self.mark_dirty(Path(row.local_root), restored)
            return restored

    def status(self) -> EngineStatus:
        """What ``ctl status`` shows of the engine; cheap enough to take from another thread while a cycle runs."""
        repo = self.repo
        return EngineStatus(
            state=self.state,
            last_sync=self.last_sync,
            objects=len(repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False)),
            held=repo.objects(STATUS_HELD, values=False),
            conflicts=len(self.conflicts()),
            errors=repo.errors(),
            symlinks_skipped=sorted(self.symlinks)[:100],
            last_cycle=self.last_report,
            progress=self.progress.as_dict(),
            folder_modes=self._folder_modes(),
            waiting_paths=self.pending_paths(),
            waiting_objects=repo.count_dirty_objects(),
        )

    def _folder_modes(self) -> list[dict[str, str]]:
        notes = self.mode_notes()
        if not notes:
            return []
        rows = {row.oaio_id: row for row in self.repo.objects(values=False)}
        return [
            {"oaio_id": oaio_id, "path": rows[oaio_id].local_root or "", "mode": rows[oaio_id].mode, "note": note}
            for oaio_id, note in notes.items()
            if oaio_id in rows
        ]

    def gc(self) -> dict[str, int]:
        with self._lock:
            return ops.gc(self.ctx)

    def rebuild_index(self) -> None:
        """Forget the index and rebuild it from disk and server at the next cycle; user files are not touched
        (a file that differs from the server's keeps its name; the server's version arrives as a copy)."""
        with self._lock:
            self.repo.wipe_index()
            self._full_rescan = True

    def close(self) -> None:
        """Close the storage backends, after a running cycle or operation (never under its transfers)."""
        with self._lock:
            self.ctx.close()
