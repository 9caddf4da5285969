"""A restore in the web app reaches a syncing device: the daemon's engine (Hub storage, real hub over loopback)
pulls the restored version as any other device's change, with the old content, and reports no error — one file
restored, then a whole version (a file added after it goes, to the device's trash)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RunningHub
from tests.engine.conftest import converge, write
from tests.web.helpers import object_path, web_url
from tests.web.test_web_http import web_login

pytestmark = pytest.mark.integration


def test_restored_file_reaches_the_device(hub: RunningHub, hub_device: Callable[..., Any]) -> None:
    device, _opened = hub_device("bob", "laptop")
    write(device.root / "notes" / "plan.txt", "first plan")
    write(device.root / "other.txt", "unchanged")
    converge(device)
    write(device.root / "notes" / "plan.txt", "second plan")
    converge(device)

    browser = web_login(hub, "bob")
    listed = browser.get(web_url(hub, "objects"))
    assert "oaiod-root" in listed.text
    api = device.api
    root = next(obj for obj in api.stampz().objects if obj.client_values.get("_name") == "oaiod-root")
    versions = api.versions(root.oaio_id)
    first = versions[-1].stamp  # newest first: the last is the one with the first plan
    restored = browser.post(
        web_url(hub, object_path(root.oaio_id, "restore")),
        data={"stamp": first, "path": "notes/plan.txt", "csrf_token": browser.cookies["csrftoken"]},
    )
    assert restored.status_code == 200 and "Restored notes/plan.txt" in restored.text

    converge(device)
    assert device.tree() == {"notes/plan.txt": b"first plan", "other.txt": b"unchanged"}

    second = versions[0].stamp  # the whole version with the second plan, over a file added since
    write(device.root / "added.txt", "added later")
    converge(device)
    whole = browser.post(
        web_url(hub, object_path(root.oaio_id, "restore")),
        data={"stamp": second, "csrf_token": browser.cookies["csrftoken"]},
    )
    assert whole.status_code == 200 and "Restored the version of" in whole.text
    converge(device)
    assert device.tree() == {"notes/plan.txt": b"second plan", "other.txt": b"unchanged"}
