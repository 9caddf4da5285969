"""Engines against a real hub (the ``hub`` fixture, over loopback HTTP) with Local storage in a tmp folder.

``devices("alice", "a")`` builds a :class:`Device`: a ``SyncEngine`` with its own root, state dir, home and device
id, logged in as that user. ``converge(*devices)`` rescans and syncs each device a few times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oaiod.engine.cycle import SyncEngine
from oaiod.engine.settings import EngineSettings
from oaiod.engine.status import CycleReport
from oaiod.hub.server import HubServer
from oaiod.server_api import OaioServerApi
from oaiod.state import StateRepo
from oaiod.storage import open_backend
from oaiod.storage.base import Backend
from oaiod.storage.hub import HubBackend
from oaiod.storage.wrappers import WrapperConfig, wrap_backend


@dataclass
class Device:
    name: str
    user: str
    root: Path
    home: Path
    engine: SyncEngine
    api: OaioServerApi

    def sync(self) -> CycleReport:
        self.engine.rescan()
        return self.engine.sync_cycle()

    def tree(self) -> dict[str, bytes]:
        return tree(self.root)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (``/``-separated relative path → content), oaiod's own folder excluded."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".oaiod"]
        for name in files:
            path = Path(folder) / name
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def write(path: Path, data: bytes | str) -> Path:
    """Write a file with an mtime safely in the past (so no quiet period applies) and distinct from before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    past = time.time_ns() - 5_000_000_000 - int.from_bytes(os.urandom(2), "big") * 1000
    os.utime(path, ns=(past, past))
    return path


@pytest.fixture
def storage_root(hub: HubServer, tmp_path: Path) -> Path:
    root = tmp_path / "csh-local"
    root.mkdir()
    assert hub.service is not None
    hub.service.set_storage("Local", {"root_folder": str(root)})
    return root


@pytest.fixture
def make_device(hub: HubServer, storage_root: Path, tmp_path: Path) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(user: str, name: str, **overrides: Any) -> Device:
        base = tmp_path / f"dev-{name}"
        home = base / "home"
        (home / "Documents").mkdir(parents=True, exist_ok=True)
        root = overrides.pop("client_root", home / "oaio_root")
        settings = EngineSettings(
            client_root=root,
            device_id=name,
            state_dir=base / "state",
            username=user,
            csh_id=overrides.pop("csh_id", "Local"),
            quiet_period=0.0,
            home=home,
            **overrides,
        )
        api = OaioServerApi(hub.host, user, hub.users[user], device_id=name, app_id="oaiod")  # type: ignore[attr-defined]
        engine = SyncEngine(settings, StateRepo(settings.state_dir), api, lambda cid, args: open_backend(cid, args))
        device = Device(name, user, root, home, engine, api)
        made.append(device)
        return device

    yield make
    for device in made:
        device.engine.close()
        device.engine.repo.close()
        device.api.close()


@pytest.fixture
def hub_device(hub: HubServer, tmp_path: Path) -> Iterator[Callable[..., tuple[Device, list[HubBackend]]]]:
    """``hub_device(user, name, wrap=...)``: a device whose objects go to Hub storage with the daemon's wiring (the
    backend shares the API session), and the HubBackends it opened. ``wrap`` makes what the engine uses of each
    (by default the usual wrappers, two quick attempts; a test may hook the calls there)."""
    made: list[Device] = []

    Wrap = Callable[[HubBackend], Backend]

    def make(user: str, name: str, wrap: Wrap | None = None) -> tuple[Device, list[HubBackend]]:
        base = tmp_path / f"dev-{name}"
        (base / "home").mkdir(parents=True)
        settings = EngineSettings(client_root=base / "home" / "oaio_root", device_id=name, state_dir=base / "state",
                                  username=user, csh_id="Hub", quiet_period=0.0, home=base / "home")  # fmt: skip
        api = OaioServerApi(hub.host, user, hub.users[user], device_id=name, app_id="oaiod")  # type: ignore[attr-defined]
        opened: list[HubBackend] = []

        def open_hub(csh_id: str, args: dict[str, Any]) -> Backend:
            assert csh_id == "Hub"
            opened.append(HubBackend.sharing(api.http, args))
            if wrap is not None:
                return wrap(opened[-1])
            return wrap_backend(opened[-1], WrapperConfig(attempts=2, backoff_base=0.01))

        engine = SyncEngine(settings, StateRepo(settings.state_dir), api, open_hub)
        made.append(Device(name, user, settings.client_root, base / "home", engine, api))
        return made[-1], opened

    yield make
    for device in made:
        device.engine.close()
        device.engine.repo.close()
        device.api.close()


def converge(*devices: Device, rounds: int = 2) -> list[CycleReport]:
    reports = []
    for _ in range(rounds):
        for device in devices:
            reports.append(device.sync())
    for report in reports:
        assert report.errors == [], report
    return reports
