"""A stand-in for :class:`oaiod.engine.SyncEngine` with exactly its interface (design.md §7), for testing the
daemon shell (watcher, scheduler, daemon process, ctl) without a server. The real engine is used by the
end-to-end tests; this one records what it was asked and lets a test steer it through files in the state dir:

- ``<state_dir>/fail-transient``: ``sync_cycle`` raises a transient error (the server looks offline);
- ``<state_dir>/slow``: ``sync_cycle`` takes that many seconds (a float in the file);
- ``<state_dir>/gate``: ``sync_cycle`` does not end while the file exists (a long cycle, ended by the test);
- ``<state_dir>/cycles``: every finished cycle appends a line (readable after a kill).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oaiod.engine.status import EngineStatus, Listing
from oaiod.errors import FailureKind, OaiodError

if TYPE_CHECKING:
    from oaiod.daemon.wiring import DaemonEngine
    from oaiod.server_api import ObjectVersion
    from oaiod.state import StateRepo
    from oaiod.state.models import ConflictRow, HistoryRow


class FakeTransientError(OaiodError):
    kind = FailureKind.TRANSIENT


@dataclass
class FakeStatus(EngineStatus):
    """The engine's status with what the fake counts (``ctl status`` shows a subclass's fields too)."""

    cycles_done: int = 0
    rescans: int = 0
    dirty: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Any] = field(default_factory=list)
    retries: int = 0


@dataclass
class FakeEngine:
    """Satisfies :class:`oaiod.daemon.wiring.DaemonEngine` (mypy checks it: see :func:`_is_a_daemon_engine`)."""

    root: Path
    state_dir: Path
    repo: StateRepo | None = None  # no state database: ctl finds no registration to wait for
    cycles: int = 0
    rescans: int = 0
    gcs: int = 0
    retries: int = 0  #: ``ctl sync`` asked to try backed-off items again
    dirty: dict[str, list[str]] = field(default_factory=dict)
    extra_roots: list[Path] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=lambda: {"done_bytes": 0, "total_bytes": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sync_cycle(self) -> dict[str, Any]:
        slow = self.state_dir / "slow"
        if slow.exists():
            total = float(slow.read_text() or 1)
            for step in range(10):
                self.progress = {"done_bytes": step * 100, "total_bytes": 1000, "current": "big.bin"}
                time.sleep(total / 10)
        while (self.state_dir / "gate").exists():
            time.sleep(0.05)
        if (self.state_dir / "fail-transient").exists():
            raise FakeTransientError("server unreachable (fake)")
        with self._lock:
            self.cycles += 1
            number = self.cycles
        with (self.state_dir / "cycles").open("a") as out:
            out.write(f"{number}\n")
        return {"cycle": number, "uploaded": 0}

    def mark_dirty(self, root: Path, paths: list[str]) -> None:
        with self._lock:
            self.dirty.setdefault(str(root), []).extend(paths)

    def local_changes_left(self) -> int:
        return 0

    def retry_failed(self) -> None:
        self.retries += 1

    def rescan(self) -> None:
        self.rescans += 1

    def gc(self) -> None:
        self.gcs += 1

    def roots(self) -> list[Path]:
        return [self.root, *self.extra_roots]

    def objects(self) -> Listing:
        from oaiod.state.models import ObjectRow  # loaded only when asked: the fake needs no state database

        return Listing([ObjectRow(oaio_id=f"fake-{root.name}", local_root=str(root)) for root in self.roots()])

    def rebuild_index(self) -> None:
        self.calls.append(["rebuild_index"])

    def add_folder(self, path: Path, mode: str = "") -> str:
        self.extra_roots.append(path)
        self.calls.append(["add_folder", str(path)])
        return f"fake-{path.name}"

    def set_mode(self, oaio_id: str, mode: str) -> str:
        self.calls.append(["set_mode", oaio_id, mode])
        return "send-receive"

    def override(self, oaio_id: str) -> str:
        self.calls.append(["override", oaio_id])
        return "nothing to override"

    def revert(self, oaio_id: str) -> list[str]:
        self.calls.append(["revert", oaio_id])
        return []

    def mode_notes(self) -> dict[str, str]:
        return {}

    def remove(self, oaio_id: str) -> None:
        self.calls.append(["remove", oaio_id])
        self.extra_roots = [p for p in self.extra_roots if f"fake-{p.name}" != oaio_id]

    def delete(self, oaio_id: str) -> str:
        self.calls.append(["delete", oaio_id])
        self.extra_roots = [p for p in self.extra_roots if f"fake-{p.name}" != oaio_id]
        return "deleted on the server"

    def share(self, oaio_id: str, user: str, right: str) -> None:
        self.calls.append(["share", oaio_id, user, right])

    def unshare(self, oaio_id: str, user: str) -> None:
        self.calls.append(["unshare", oaio_id, user])

    def users(self, oaio_id: str) -> list[dict[str, str]]:
        return [{"user": "bob", "right": "r"}]

    def link(self, oaio_id: str, path: str, expires_in: int, password: str | None) -> dict[str, Any]:
        self.calls.append(["link", oaio_id, path, expires_in, password is not None])
        return {"id": "L1", "url": "http://hub/api/hub/share/L1?expires=1&bewit=x", "path": path}

    def links(self, oaio_id: str) -> list[dict[str, Any]]:
        return [{"id": "L1", "url": "http://hub/api/hub/share/L1?expires=1&bewit=x", "path": "", "state": "active"}]

    def revoke_link(self, link_id: str) -> dict[str, Any]:
        self.calls.append(["revoke-link", link_id])
        return {"id": link_id, "state": "revoked"}

    def confirm_delete(self, oaio_id: str) -> None:
        self.calls.append(["confirm_delete", oaio_id])

    def exclude(self, path: Path, *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append(["exclude", str(path), dry_run])
        return {"path": str(path), "trashed": [], "size": 0, "kept": []}

    def include(self, path: Path) -> list[str]:
        self.calls.append(["include", str(path)])
        return []

    def exclusions(self) -> list[tuple[str, str]]:
        return []

    def trash(self) -> list[Any]:
        return []

    def file_status(self, path: Path) -> dict[str, str]:
        return {"path": str(path), "state": "up to date", "why": ""}

    def file_versions(self, path: Path) -> list[Any]:
        return []

    def restore_path(self, path: Path, stamp: str, to: Path | None = None) -> list[str]:
        self.calls.append(["restore_path", str(path), stamp])
        return []

    def restore_trash(self, path: Path, day: str | None = None) -> list[str]:
        self.calls.append(["restore_trash", str(path), day])
        return []

    def conflicts(self) -> list[ConflictRow]:
        from oaiod.state.models import ConflictRow

        return [ConflictRow(oaio_id="fake", kind="file", path="a (conflicted copy).txt")]

    def history(self, limit: int = 200, *, since: str = "", path: Path | None = None) -> list[HistoryRow]:
        from oaiod.state.models import HistoryRow

        self.calls.append(["history", limit, since, str(path) if path else None])
        return [HistoryRow(at="20240101000000000000", oaio_id="fake", action="cycle", detail=str(self.cycles))]

    def versions(self, oaio_id: str) -> list[ObjectVersion]:
        from oaiod.server_api import ObjectVersion

        return [ObjectVersion("20240101000000000000", {}, None, "alice", "fake", "oaiod", "")]

    def restore(self, oaio_id: str, stamp: str, to: Path | None = None) -> None:
        self.calls.append(["restore", oaio_id, stamp, str(to) if to else None])

    # objects of apps: recorded, as the real engine's are tested against real daemons (tests/daemon/test_client_api)
    def values(self, oaio_id: str) -> dict[str, Any]:
        return {"_name": oaio_id}

    def set_values(self, oaio_id: str, values: dict[str, Any], unset: Iterable[str] = ()) -> None:
        self.calls.append(["set_values", oaio_id, values, list(unset)])

    def new_object(self, values: dict[str, Any]) -> str:
        self.calls.append(["new_object", values])
        return "fake-data"

    def new_file_object(
        self, name: str, source: Path | None, root: Path | None = None, values: dict[str, Any] | None = None
    ) -> str:
        self.calls.append(["new_file_object", name, str(source), str(root)])
        return "fake-file"

    def update_file(self, oaio_id: str, name: str = "", source: Path | None = None) -> str:
        self.calls.append(["update_file", oaio_id, name])
        return name

    def unregister(self, oaio_id: str, wipe_files: bool = False) -> str:
        self.calls.append(["unregister", oaio_id, wipe_files])
        return "deleted on the server"

    def status(self) -> FakeStatus:
        with self._lock:
            return FakeStatus(
                progress={"queued_uploads": 0, "queued_upload_bytes": 0},
                cycles_done=self.cycles,
                rescans=self.rescans,
                dirty={root: sorted(set(paths)) for root, paths in self.dirty.items()},
                calls=list(self.calls),
                retries=self.retries,
            )


def _is_a_daemon_engine(engine: FakeEngine) -> DaemonEngine:
    return engine  # mypy (pyproject's [tool.mypy] files) checks that the fake has the engine's interface


def fake_factory(config: Any) -> Any:
    """An :data:`oaiod.daemon.EngineFactory` giving a :class:`FakeEngine` on the config's root."""
    from oaiod.daemon.wiring import EngineHandle

    config.client.root.mkdir(parents=True, exist_ok=True)
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    if (config.paths.state_dir / "broken-db").exists():
        from oaiod.daemon.lock import DaemonError

        raise DaemonError("state database cannot be opened (fake)")
    return EngineHandle(FakeEngine(config.client.root, config.paths.state_dir), server_url="fake://", device_id="fake")
