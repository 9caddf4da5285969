"""File-system events → debounced, coalesced dirty paths for the engine.

A watchdog observer watches every synced root. Each event's path (both paths of a move) is made relative to
its root, filtered by the ignore rules, and collected by a :class:`Debouncer`; when no event came for the
quiet period (``[sync] debounce``) — or events kept coming for ``max_delay`` — the collected paths are handed
over in one call per root (``on_dirty(root, paths)``, the engine's ``mark_dirty``) and ``on_flush()`` asks for
an immediate sync cycle.

``ctl sync --wait`` cannot wait for the quiet period: :meth:`Watcher.settle` hands over at once every change made
before it was called. inotify delivers events asynchronously, so it first writes a barrier file in each root
(``.oaiod-tmp-barrier-*``, ignored by the engine like every temp name) and waits until watchdog dispatched its
event: events for one root arrive in order, so every earlier change of that root has reached the debouncer too.

Lost events never crash the daemon: an inotify queue overflow (reported by watchdog through its logger, which
we listen to) and a watch-limit error (``ENOSPC``/``EMFILE`` when a root is scheduled) log a warning and call
``on_overflow()``, which schedules a rescan. A root that could not be watched is retried on the next
:meth:`Watcher.watch` call (the daemon calls it after each rescan and when roots change).

Watching that silently stopped is noticed too: watchdog's inotify emitter thread ends by itself when its root
is deleted (``IN_DELETE_SELF``; the observer keeps the dead emitter, so scheduling the same path again would do
nothing) and dies on an exception; the observer thread can die as well. :meth:`Watcher.check_health` — run
every few seconds by the scheduler — finds dead emitters (and a dead observer), logs a warning, watches those
roots again with fresh emitters (a deleted root as soon as it exists again) and calls ``on_overflow()``: the
rescan finds what changed while nobody watched.

A folder moved inside a root leaves some of its subfolders unwatched when they were made just before the move
(watchdog moves the watches it has; a subfolder whose creation it had not processed yet is never watched): the
engine's staged new folders (design §3) and a user's ``mkdir -p a/b/c && mv a x`` both do that. So each folder
moved inside a root marks the root, and the next :meth:`Watcher.check_health` watches it again (fresh watches
for the whole tree) and marks the whole root dirty: the next cycle's index walk finds what changed meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_MOVED,
    EVENT_TYPE_OPENED,
    DirModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger(__name__)

IgnoreRule = Callable[[Path, str], bool]  #: (root, relative path) -> ignored?
WATCHDOG_LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c", "watchdog.observers.inotify_buffer")

#: built-in ignores, used until (and in addition to) :mod:`oaiod.engine.ignore`'s rules
BUILTIN_IGNORED_NAMES = (
    ".DS_Store", "Thumbs.db", "desktop.ini", ".oaiod", "~$*", ".oaiod-tmp-*", "*.swp", "*.swx",
    "*.swo", ".*.sw?", "*~", ".#*", "#*#", "*.part", "*.crdownload", ".~lock.*#", "4913",
)  # fmt: skip


def builtin_ignored(root: Path, relpath: str) -> bool:
    """True when any component of ``relpath`` is one of the built-in ignored names (editor, OS and oaiod files)."""
    return any(fnmatch.fnmatchcase(part, pattern) for part in relpath.split("/") for pattern in BUILTIN_IGNORED_NAMES)


class Debouncer:
    """Collects dirty paths per root and flushes them after a quiet period; one thread, stopped by :meth:`stop`."""

    def __init__(
        self,
        on_dirty: Callable[[Path, list[str]], None],
        on_flush: Callable[[], object],  # its result is not used
        quiet: float,
        max_delay: float | None = None,
    ) -> None:
        self.on_dirty = on_dirty
        self.on_flush = on_flush
        self.quiet = quiet
        self.max_delay = max_delay if max_delay is not None else max(10 * quiet, 2.0)
        self._dirty: dict[Path, set[str]] = {}
        self._first = self._last = 0.0
        self._cond = threading.Condition()
        self._flushing = threading.Lock()  # taken while a batch is handed over: flush_now returns after it
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="oaiod-debouncer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, root: Path, paths: Iterable[str]) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._dirty:
                self._first = now
            self._dirty.setdefault(root, set()).update(paths)
            self._last = now
            self._cond.notify()

    def stop(self) -> None:
        """Stop the thread; paths still collected are flushed first (no event is dropped at shutdown)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def flush_now(self) -> None:
        """Hand over what was collected now, without asking for a cycle; returns once every batch taken before
        (by this call or the debouncer's thread) reached ``on_dirty``."""
        with self._flushing:
            with self._cond:
                batch, self._dirty = self._dirty, {}
            if batch:
                self._flush(batch, trigger=False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._dirty:
                        now = time.monotonic()
                        due = min(self._last + self.quiet, self._first + self.max_delay)
                        if now >= due:
                            break
                        self._cond.wait(due - now)
                    else:
                        self._cond.wait()
                stopped = self._stopped
            with self._flushing:
                with self._cond:
                    batch, self._dirty = self._dirty, {}
                if batch:
                    self._flush(batch, trigger=not stopped)
            if stopped:
                return

    def _flush(self, batch: dict[Path, set[str]], *, trigger: bool) -> None:
        for root, paths in batch.items():
            try:
                self.on_dirty(root, sorted(paths))
            except Exception:  # a failing engine call must not kill the watcher; the rescan catches up
                log.exception(
                    "could not record %d changed path(s) under %s; the next rescan finds them", len(paths), root
                )
        if trigger:
            try:
                self.on_flush()
            except Exception:
                log.exception("could not request a sync after local changes")


BARRIER_PREFIX = ".oaiod-tmp-barrier-"  #: :meth:`Watcher.settle`'s marker files (a temp name: never synced)


class _Barriers:
    """The barrier files :meth:`Watcher.settle` waits for: name -> event set when watchdog dispatched it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}

    def expect(self, name: str) -> threading.Event:
        seen = threading.Event()
        with self._lock:
            self._waiting[name] = seen
        return seen

    def forget(self, name: str) -> None:
        with self._lock:
            self._waiting.pop(name, None)

    def saw(self, name: str) -> None:
        with self._lock:
            seen = self._waiting.get(name)
        if seen is not None:
            seen.set()


class _RootHandler(FileSystemEventHandler):
    """Turns one root's watchdog events into relative paths for the debouncer."""

    def __init__(
        self,
        root: Path,
        debouncer: Debouncer,
        is_ignored: IgnoreRule,
        on_folder_moved: Callable[[Path], None],
        barriers: _Barriers | None = None,
    ) -> None:
        self.root = root
        self.debouncer = debouncer
        self.is_ignored = is_ignored
        self.on_folder_moved = on_folder_moved
        self.barriers = barriers or _Barriers()

    def on_any_event(self, event: FileSystemEvent) -> None:
        name = os.path.basename(os.fsdecode(event.src_path))
        if name.startswith(BARRIER_PREFIX):
            self.barriers.saw(name)
            return
        if event.event_type in (EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE) or isinstance(event, DirModifiedEvent):
            return  # reads, and a folder's own mtime, change nothing we sync
        if event.is_directory and event.event_type == EVENT_TYPE_MOVED and self._relative(event.dest_path):
            self.on_folder_moved(self.root)  # its subfolders may be unwatched: see the module docstring
        paths = [self._relative(event.src_path)]
        if event.dest_path:
            paths.append(self._relative(event.dest_path))  # a move: both sides are dirty
        wanted = [p for p in paths if p and not self.is_ignored(self.root, p)]
        if wanted:
            self.debouncer.add(self.root, wanted)

    def _relative(self, path: bytes | str) -> str:
        """``path`` relative to the root, ``/``-separated; "" for the root itself or a path outside it."""
        rel = os.path.relpath(os.fsdecode(path), self.root)
        if rel == "." or rel == ".." or rel.startswith("../"):
            return ""
        return rel.replace(os.sep, "/")


class _OverflowListener(logging.Handler):
    """Hears watchdog report lost events (queue overflow, failed re-watch) and asks for a rescan."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "overflow" in message or "unable to rebuild" in message:
            self.on_overflow()


class Watcher:
    """Watches a changing set of roots; :meth:`watch` reconciles the watched set with the engine's roots."""

    def __init__(
        self,
        on_dirty: Callable[[Path, list[str]], None],
        on_flush: Callable[[], object],  # its result is not used
        on_overflow: Callable[[], None],
        debounce: float,
        is_ignored: IgnoreRule = builtin_ignored,
        observer_factory: Callable[[], BaseObserver] = Observer,
    ) -> None:
        self.is_ignored = is_ignored
        self.debouncer = Debouncer(on_dirty, on_flush, debounce)
        self._on_overflow = on_overflow
        self._observer_factory = observer_factory
        self._observer = observer_factory()
        self._watches: dict[Path, ObservedWatch] = {}
        self._wanted: set[Path] = set()  # what watch() was asked for; missing folders are retried by check_health
        self._lock = threading.Lock()
        #: roots where a folder was moved since the last health check; a lock of its own, because watchdog's
        #: observer thread adds to it while check_health may hold ``_lock`` and wait for that thread
        self._folder_moved: set[Path] = set()
        self._moved_lock = threading.Lock()
        self._listener = _OverflowListener(self._lost_events)
        self._barriers = _Barriers()
        self._started = False
        self._stopped = False

    def start(self, roots: Iterable[Path] = ()) -> None:
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(self._listener)
        self.debouncer.start()
        self._observer.start()
        self._started = True
        self.watch(roots)

    def stop(self) -> None:
        """Stop observing and flush what was collected; joins every thread this watcher started."""
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._listener)
        with self._lock:
            self._stopped = True
            observer = self._observer
        if self._started:
            observer.stop()
            observer.join()
        self.debouncer.stop()

    @property
    def roots(self) -> list[Path]:
        with self._lock:
            return sorted(self._watches)

    def watch(self, roots: Iterable[Path]) -> None:
        """Watch exactly ``roots``: new ones are scheduled, gone ones unscheduled, failed ones retried."""
        wanted = {Path(root) for root in roots}
        with self._lock:
            self._wanted = wanted
            for root in set(self._watches) - wanted:
                self._observer.unschedule(self._watches.pop(root))
                log.info("stopped watching %s", root)
            for root in sorted(wanted - set(self._watches)):
                self._schedule(root)

    def _schedule(self, root: Path) -> None:
        if not root.is_dir():
            log.warning("synced root %s is missing; not watched until it exists", root)
            return
        handler = _RootHandler(root, self.debouncer, self.is_ignored, self._note_folder_moved, self._barriers)
        try:
            self._watches[root] = self._observer.schedule(handler, str(root), recursive=True)
        except OSError as exc:
            self._watch_failed(root, exc)
            return
        log.info("watching %s", root)

    def settle(self, timeout: float = 5.0) -> None:
        """Hand every change made in a watched root before this call to ``on_dirty`` now (see the module
        docstring). A root where no barrier file can be written (read-only) or whose event does not come within
        ``timeout`` is handed over with what arrived so far; the rescans find anything later."""
        waiting: list[tuple[str, Path, threading.Event]] = []
        for root in self.roots:
            name = f"{BARRIER_PREFIX}{secrets.token_hex(6)}"
            seen = self._barriers.expect(name)
            try:
                (root / name).touch(exist_ok=False)
            except OSError as exc:
                log.debug("no barrier file in %s (%s); handing over what arrived", root, exc)
                self._barriers.forget(name)
                continue
            waiting.append((name, root, seen))
        deadline = time.monotonic() + timeout
        for name, root, seen in waiting:
            if not seen.wait(max(0.0, deadline - time.monotonic())):
                log.debug("the barrier event of %s did not come within %.0f s", root, timeout)
            self._barriers.forget(name)
            with contextlib.suppress(OSError):
                (root / name).unlink()
        self.debouncer.flush_now()

    def check_health(self) -> list[Path]:
        """Watch again every root whose watching stopped (dead emitter or observer thread, a root deleted and
        re-created, a missing root that appeared); each is logged, and one rescan is requested for all. Returns
        those roots. Cheap when all is well: a liveness look at each emitter thread."""
        with self._lock:
            if not self._started or self._stopped:
                return []
            observer_died = not self._observer.is_alive()
            restarted = self._restart_observer() if observer_died else self._restart_dead_emitters()
            for root in sorted(self._wanted - set(self._watches)):
                if root.is_dir():  # a missing root that exists (again); one that failed otherwise waits for watch()
                    self._schedule(root)
                    if root in self._watches:
                        log.warning("synced root %s exists again; watching it and rescanning", root)
                        restarted.append(root)
            self._rewatch_moved_folders(restarted)
        if restarted:
            self._on_overflow()
        return restarted

    def _note_folder_moved(self, root: Path) -> None:
        with self._moved_lock:
            self._folder_moved.add(root)

    def _rewatch_moved_folders(self, restarted: list[Path]) -> None:
        """Watch each root where a folder was moved again, whole, and mark it dirty; the caller holds the lock."""
        with self._moved_lock:
            roots, self._folder_moved = self._folder_moved, set()
        for root in sorted(roots & set(self._watches) - set(restarted)):
            log.debug("a folder was moved in %s: watching its subfolders again and indexing the root", root)
            try:
                self._observer.unschedule(self._watches.pop(root))
            except KeyError:  # watchdog already forgot it
                pass
            self._schedule(root)
            self.debouncer.add(root, [""])

    def _restart_dead_emitters(self) -> list[Path]:
        """Unschedule each root whose emitter thread ended and schedule it again; the caller holds the lock."""
        alive = {emitter.watch for emitter in self._observer.emitters if emitter.is_alive()}
        dead = [root for root, watch in self._watches.items() if watch not in alive]
        for root in dead:
            try:
                self._observer.unschedule(self._watches.pop(root))
            except KeyError:  # watchdog already forgot it
                pass
            why = "the folder was deleted" if not root.is_dir() else "watchdog's emitter thread ended"
            log.warning("watching %s stopped (%s); watching it again and rescanning", root, why)
            self._schedule(root)
        return dead

    def _restart_observer(self) -> list[Path]:
        """Replace a dead observer thread with a new one watching every root; the caller holds the lock."""
        roots = sorted(self._watches)
        log.warning("the file watcher thread died; restarting it for %d root(s) and rescanning", len(roots))
        old, self._observer, self._watches = self._observer, self._observer_factory(), {}
        old.stop()
        try:
            old.join(5)
        except RuntimeError:  # never started
            pass
        self._observer.start()
        for root in roots:
            self._schedule(root)
        return roots

    def _watch_failed(self, root: Path, exc: OSError) -> None:
        hint = ""
        if exc.errno == errno.ENOSPC:
            hint = " (raise fs.inotify.max_user_watches, e.g. sysctl fs.inotify.max_user_watches=524288)"
        elif exc.errno == errno.EMFILE:
            hint = " (raise fs.inotify.max_user_instances)"
        log.warning(
            "cannot watch %s: %s%s; changes there are found by rescans until watching works",
            root,
            exc.strerror or exc,
            hint,
        )
        self._on_overflow()

    def _lost_events(self) -> None:
        log.warning("file events were lost (inotify queue overflow); rescanning all roots")
        self._on_overflow()
