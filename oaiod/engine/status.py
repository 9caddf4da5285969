"""What the engine reports as data: a cycle's :class:`CycleReport`, ``ctl status``'s :class:`EngineStatus` and
``ctl ls``'s :class:`Listing`. How they are shown is ``ctl``'s business (:mod:`oaiod.daemon.ctl.present`).

Importing this module loads nothing of the engine (the row types are for annotations only): the daemon and the
tests' fake engine use it without a server, a state database or storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oaiod.state.models import ErrorRow, ExcludedFolderRow, ObjectRow


@dataclass
class CycleReport:
    """What one cycle did (``ok`` False: something failed and is retried; ``errors`` says what)."""

    started: str = ""
    finished: str = ""
    pulled: int = 0
    pushed: int = 0
    downloads: int = 0
    local_copies: int = 0  # of the downloads: served by a copy of a file already here, not from storage
    uploads: int = 0
    copies: int = 0
    trashed: int = 0
    hashed: int = 0
    conflicts: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ok: bool = True


@dataclass
class EngineStatus:
    """The engine's part of ``ctl status``; taken while a cycle runs (each read is one transaction of its own)."""

    state: str = "idle"  #: idle, syncing, offline or error
    last_sync: str = ""  #: when the last cycle finished
    objects: int = 0  #: synced objects (active, new or held)
    held: list[ObjectRow] = field(default_factory=list)  #: held objects, each with its ``hold_reason``
    conflicts: int = 0
    errors: list[ErrorRow] = field(default_factory=list)  #: failed items with their kind, newest first
    symlinks_skipped: list[str] = field(default_factory=list)  #: (at most 100)
    last_cycle: CycleReport | None = None  #: None before the first cycle
    progress: Mapping[str, Any] = field(default_factory=dict)  #: the current transfer and what is queued
    #: send-only and receive-only folders apart from the server: ``{"path", "mode", "note"}`` each (engine.modes)
    folder_modes: list[dict[str, str]] = field(default_factory=list)
    #: what waits for the next cycle, right while paused: paths the watcher saw change (not looked at yet), and
    #: objects with indexed changes to push or to register
    waiting_paths: int = 0
    waiting_objects: int = 0


@dataclass
class Listing:
    """What ``ctl ls`` lists: every object, and every folder excluded from the synced folder around it."""

    objects: list[ObjectRow] = field(default_factory=list)
    excluded: list[ExcludedFolderRow] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  #: oaio_id -> ``_name``, where an object has one
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  #: data and file objects' values, by id
