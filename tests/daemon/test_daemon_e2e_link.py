"""``oaiod ctl link`` as a user runs it, from a device syncing on the hub's own blob store (csh id ``Hub``): a link
to a file, to a folder (a zip), with a password from stdin; listed and revoked; each URL fetched with plain
``requests`` and no account."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_helpers import Cluster, first_cycles, root_of, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def hub_cluster(hub_factory: Callable[..., Any], tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(hub_factory(), tmp_path, tmp_path / "unused")
    try:
        yield group
    finally:
        group.stop_all()


def ctl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, input=stdin)


def fetch(url: str, **kwargs: Any) -> requests.Response:
    """GET with no session; waits while a folder's zip is prepared (202)."""
    deadline = time.monotonic() + 60
    while True:
        answer = requests.get(url, timeout=30, **kwargs)
        if answer.status_code != 202 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_ctl_link_file_folder_password_list_revoke(hub_cluster: Cluster) -> None:
    config = hub_cluster.config("dev-a")
    config.write_text(config.read_text().replace('csh_id = "Local"', 'csh_id = "Hub"'))
    a = hub_cluster.start("dev-a")
    first_cycles(a)
    root = root_of(a)
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha")
    (root / "docs" / "deep" / "b.txt").write_text("bravo")
    done: dict[str, Any] = {}

    def linked() -> bool:  # the files reach the hub with the next cycles
        made = ctl(a.config_file, "link", str(root / "docs" / "a.txt"), "--expires", "1h")
        done["made"] = made
        return made.returncode == 0 and fetch(made.stdout.strip()).content == b"alpha"

    wait_for(linked, 120, "a link to a synced file")
    url = done["made"].stdout.strip()
    assert url.startswith(hub_cluster.hub.url + "hub/share/") and "bewit=" in url

    folder = ctl(a.config_file, "link", str(root / "docs"))
    assert folder.returncode == 0, folder.stderr
    zipped = fetch(folder.stdout.strip())
    assert zipped.status_code == 200, zipped.text
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == {
            "docs/a.txt": b"alpha",
            "docs/deep/b.txt": b"bravo",
        }

    locked = ctl(a.config_file, "link", str(root / "docs" / "a.txt"), "--password-stdin", stdin="open sesame\n")
    assert locked.returncode == 0, locked.stderr
    assert "open sesame" not in locked.stdout
    assert fetch(locked.stdout.strip()).status_code == 401
    assert fetch(locked.stdout.strip(), headers={"X-Oaiod-Link-Password": "open sesame"}).content == b"alpha"

    listed = ctl(a.config_file, "link", "--list", str(root), "--json")
    assert listed.returncode == 0, listed.stderr
    links = json.loads(listed.stdout)
    assert len(links) == 3 and {link["state"] for link in links} == {"active"}
    first = next(link for link in links if link["url"] == url)
    revoked = ctl(a.config_file, "link", "--revoke", first["id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    assert fetch(url).status_code == 410
    assert ctl(a.config_file, "link").returncode == 2  # neither PATH nor --revoke
