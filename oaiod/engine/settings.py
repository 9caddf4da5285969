"""What the sync engine needs to know, as one small frozen dataclass; the daemon maps its TOML config onto it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT_OBJECT_NAME = "oaiod-root"


@dataclass(frozen=True)
class EngineSettings:
    """Settings of one :class:`~oaiod.engine.cycle.SyncEngine`.

    ``csh_id`` is the storage host that new objects are registered with (the server's ``csh_args/<csh_id>`` gives
    its arguments). ``home`` and ``placeholders`` override the user's folders (tests, unusual set-ups).
    """

    client_root: Path
    device_id: str
    state_dir: Path
    username: str
    csh_id: str = "Local"
    app_id: str = "oaiod"
    trash_days: float = 30.0
    mass_delete_ratio: float = 0.5
    mass_delete_min: int = 5
    #: a file modified within this many seconds is still being written: left for the next cycle
    quiet_period: float = 1.0
    #: how many versions per object stay on storage (the newest ones; gc deletes older prefixes)
    keep_versions: int = 10
    ignore_patterns: tuple[str, ...] = ()
    #: how often a commit that lost a race (409) is merged and tried again within one cycle
    commit_attempts: int = 3
    home: Path | None = None
    placeholders: dict[str, Path] | None = field(default=None, hash=False)
    #: folder path -> send-receive, send-only or receive-only (the config's; :mod:`oaiod.engine.modes`)
    folder_modes: dict[str, str] = field(default_factory=dict, hash=False)
