"""The watcher with real watchdog observers on tmp folders: coalescing, moves, ignores, lost events, roots.

A real inotify queue overflow or watch limit cannot be produced reliably (it needs sysctl changes or racing the
kernel), so two things are injected and said so where they are: the overflow is the exact warning watchdog's
inotify emitter logs when the kernel reports IN_Q_OVERFLOW (we listen to that logger), and the watch limit
is an observer whose ``schedule`` raises ``OSError(ENOSPC)`` as watchdog's ``inotify_add_watch`` wrapper does.
Watching that stops is real: a watched root deleted (the kernel's IN_DELETE_SELF ends watchdog's emitter thread),
an emitter thread and the observer thread stopped with watchdog's own ``stop()``.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from pathlib import Path

from daemon_helpers import wait_for
from watchdog.observers import Observer

from oaiod.daemon.process import ignore_rule
from oaiod.daemon.watch import Debouncer, Watcher, builtin_ignored


class Recorder:
    """Collects what the watcher hands over: dirty paths per root, flushes and rescan requests."""

    def __init__(self) -> None:
        self.dirty: list[tuple[Path, list[str]]] = []
        self.flushes = 0
        self.rescans = 0
        self.lock = threading.Lock()

    def on_dirty(self, root: Path, paths: list[str]) -> None:
        with self.lock:
            self.dirty.append((root, paths))

    def on_flush(self) -> None:
        with self.lock:
            self.flushes += 1

    def on_overflow(self) -> None:
        with self.lock:
            self.rescans += 1

    def paths(self, root: Path | None = None) -> set[str]:
        with self.lock:
            return {p for r, paths in self.dirty for p in paths if root is None or r == root}


def make_watcher(rec: Recorder, debounce: float = 0.3, **kwargs: object) -> Watcher:
    return Watcher(rec.on_dirty, rec.on_flush, rec.on_overflow, debounce, **kwargs)  # type: ignore[arg-type]


def test_debounce_coalesces_a_burst_into_one_flush(tmp_path: Path) -> None:
    rec = Recorder()
    watcher = make_watcher(rec, debounce=2.0)  # long enough that a loaded machine leaves no gap in the burst
    watcher.start([tmp_path])
    try:
        for i in range(20):
            (tmp_path / f"f{i}.txt").write_text("x" * i)
        (tmp_path / "f3.txt").write_text("again")
        wait_for(lambda: rec.flushes, what="a flush")
        assert rec.paths() == {f"f{i}.txt" for i in range(20)}
        assert rec.flushes == 1  # 21 writes within the quiet period: one batch, one sync request
        assert len(rec.dirty) == 1 and rec.dirty[0][0] == tmp_path
    finally:
        watcher.stop()


def test_moves_mark_both_paths_and_subfolders(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner.txt").write_text("i")
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.2)
    watcher.start([tmp_path])
    try:
        (tmp_path / "a.txt").rename(tmp_path / "b.txt")
        (tmp_path / "dir").rename(tmp_path / "moved")
        wait_for(lambda: {"a.txt", "b.txt", "dir", "moved"} <= rec.paths(), what="both sides of the moves")
        wait_for(lambda: "moved/inner.txt" in rec.paths(), what="the moved folder's content")
    finally:
        watcher.stop()


def test_ignored_files_never_reach_the_engine(tmp_path: Path) -> None:
    (tmp_path / ".oaioignore").write_text("*.log\nbuild/\n")
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.2, is_ignored=ignore_rule(("*.bak",)))
    watcher.start([tmp_path])
    try:
        (tmp_path / "build").mkdir()
        for name in (".x.swp", "~$doc.docx", ".DS_Store", "a.log", "b.bak", "build/out.o", ".oaiod-tmp-123"):
            (tmp_path / name).write_text("junk")
        (tmp_path / ".oaiod").mkdir()
        (tmp_path / ".oaiod" / "trash.txt").write_text("t")
        (tmp_path / "keep.txt").write_text("k")
        wait_for(lambda: "keep.txt" in rec.paths(), what="the kept file")
        assert rec.paths() == {"keep.txt"}
    finally:
        watcher.stop()
    assert builtin_ignored(tmp_path, "sub/.oaiod/x") and not builtin_ignored(tmp_path, "notes.txt")


def test_roots_added_and_removed_at_runtime(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.1)
    watcher.start([first])
    try:
        watcher.watch([first, second])
        assert watcher.roots == [first, second]
        (second / "new.txt").write_text("n")
        wait_for(lambda: "new.txt" in rec.paths(second), what="an event in the added root")
        watcher.watch([second])
        assert watcher.roots == [second]
        (first / "unwatched.txt").write_text("u")
        (second / "sentinel.txt").write_text("s")
        wait_for(lambda: "sentinel.txt" in rec.paths(second), what="the sentinel")
        assert "unwatched.txt" not in rec.paths()
    finally:
        watcher.stop()


def test_queue_overflow_requests_a_rescan(tmp_path: Path) -> None:
    """Injected: the warning watchdog's inotify emitter logs on IN_Q_OVERFLOW (see the module docstring)."""
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.start([tmp_path])
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert rec.rescans == 1
    finally:
        watcher.stop()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert rec.rescans == 1  # a stopped watcher no longer listens


class LimitedObserver(Observer):  # type: ignore[misc,valid-type]
    """Injected: refuses the first ``schedule`` like inotify_add_watch at the watch limit (ENOSPC)."""

    failures = 1

    def schedule(self, *args: object, **kwargs: object) -> object:
        if LimitedObserver.failures:
            LimitedObserver.failures -= 1
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return super().schedule(*args, **kwargs)


def test_watch_limit_logs_rescans_and_retries(tmp_path: Path, caplog: object) -> None:
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.1, observer_factory=LimitedObserver)
    with caplog.at_level(logging.WARNING, logger="oaiod.daemon.watch"):  # type: ignore[attr-defined]
        watcher.start([tmp_path])
    try:
        assert rec.rescans == 1
        assert watcher.roots == []
        assert "max_user_watches" in caplog.text  # type: ignore[attr-defined]
        watcher.watch([tmp_path])  # the daemon calls this after each cycle: the retry succeeds
        assert watcher.roots == [tmp_path]
        (tmp_path / "late.txt").write_text("l")
        wait_for(lambda: "late.txt" in rec.paths(), what="events once watching works")
    finally:
        watcher.stop()


def test_debouncer_flushes_pending_paths_on_stop_and_survives_engine_errors(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def failing(root: Path, paths: list[str]) -> None:
        calls.append(paths)
        raise RuntimeError("engine busy")

    debouncer = Debouncer(failing, lambda: None, quiet=60)
    debouncer.start()
    debouncer.add(tmp_path, ["x"])
    debouncer.stop()  # long quiet period: only the stop flushes it
    assert calls == [["x"]]
    assert not debouncer._thread.is_alive()


def test_max_delay_bounds_waiting_under_constant_events(tmp_path: Path) -> None:
    flushed = threading.Event()
    debouncer = Debouncer(lambda r, p: None, flushed.set, quiet=0.2, max_delay=0.5)
    debouncer.start()
    try:
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                debouncer.add(tmp_path, ["busy"])
                stop.wait(0.05)

        thread = threading.Thread(target=churn)
        thread.start()
        assert flushed.wait(30)  # events every 50 ms never leave a 200 ms quiet gap; max_delay flushes anyway
        stop.set()
        thread.join()
    finally:
        debouncer.stop()


def _observers() -> tuple[list[Observer], object]:
    """An observer factory that keeps what it made, so a test can reach the real emitter threads."""
    made: list[Observer] = []

    def factory() -> Observer:
        made.append(Observer())
        return made[-1]

    return made, factory


def _sees_new_files(rec: Recorder, root: Path, name: str) -> None:
    (root / name).write_text(name)
    wait_for(lambda: name in rec.paths(root), what=f"the event of {name}")


def test_a_deleted_root_is_watched_again_when_it_exists_again(tmp_path: Path) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.1)
    watcher.start([root, other])
    try:
        _sees_new_files(rec, root, "before.txt")
        assert watcher.check_health() == []  # all is well: nothing restarted, no rescan
        shutil.rmtree(root)  # inotify reports IN_DELETE_SELF: watchdog's emitter for root ends itself
        wait_for(lambda: watcher.check_health() == [root], what="the dead emitter found")
        assert rec.rescans == 1 and root not in watcher.roots and other in watcher.roots
        assert watcher.check_health() == []  # still missing: waited for quietly
        root.mkdir()
        assert watcher.check_health() == [root] and root in watcher.roots
        assert rec.rescans == 2  # what was written while nobody watched is found by the rescan
        _sees_new_files(rec, root, "after.txt")
        _sees_new_files(rec, other, "untouched.txt")
    finally:
        watcher.stop()


def test_a_root_deleted_and_recreated_between_checks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    rec = Recorder()
    made, factory = _observers()
    watcher = make_watcher(rec, debounce=0.1, observer_factory=factory)
    watcher.start([root])
    try:
        shutil.rmtree(root)
        root.mkdir()  # back before the check ran: only the dead emitter thread tells
        wait_for(lambda: not any(e.is_alive() for e in made[0].emitters), what="the emitter to end")
        assert watcher.check_health() == [root] and rec.rescans == 1
        _sees_new_files(rec, root, "after.txt")
    finally:
        watcher.stop()


def test_a_stopped_emitter_thread_is_replaced(tmp_path: Path, caplog: object) -> None:
    rec = Recorder()
    made, factory = _observers()
    watcher = make_watcher(rec, debounce=0.1, observer_factory=factory)
    watcher.start([tmp_path])
    try:
        (emitter,) = made[0].emitters
        emitter.stop()  # the thread ends as it would after an exception in queue_events
        emitter.join(10)
        with caplog.at_level(logging.WARNING, logger="oaiod.daemon.watch"):  # type: ignore[attr-defined]
            assert watcher.check_health() == [tmp_path]
        assert "(watchdog's emitter thread ended); watching it again and rescanning" in caplog.text  # type: ignore[attr-defined]
        assert rec.rescans == 1 and all(e.is_alive() for e in made[0].emitters)
        _sees_new_files(rec, tmp_path, "after.txt")
    finally:
        watcher.stop()


def test_a_dead_observer_thread_is_replaced(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rec = Recorder()
    made, factory = _observers()
    watcher = make_watcher(rec, debounce=0.1, observer_factory=factory)
    watcher.start([a, b])
    try:
        made[0].stop()
        made[0].join(10)
        assert watcher.check_health() == [a, b] and rec.rescans == 1 and len(made) == 2
        _sees_new_files(rec, a, "after-a.txt")
        _sees_new_files(rec, b, "after-b.txt")
    finally:
        watcher.stop()
    assert not made[1].is_alive()
