"""Folder zips and share links in a real browser (Debian's chromium through Playwright, ``tests/browser.py``): a
folder downloaded as a prepared zip (its content checked), a link made on the links page and fetched with plain
``requests`` (no account), then revoked (410). Screenshots of the pages go to ``build/screenshots``."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.browser import screenshot
from tests.conftest import HubSession, RunningHub
from tests.web.helpers import make_folder, object_path, web_url
from tests.web.test_web_browser import log_in

FILES = {"plan.txt": b"the plan", "2026/q1.csv": b"a,b\n1,2\n", "2026/deep/notes.md": b"# notes\n"}


def test_folder_zip_and_share_link(
    page: Any, hub: RunningHub, hub_session: Callable[..., HubSession], tmp_path: Path
) -> None:
    bob = hub_session(hub, "bob")
    folder = make_folder(bob, "Reports", FILES)
    seen: list[str] = []  # console messages: a CSP violation or a script error shows up here
    page.on("console", lambda message: seen.append(f"{message.type}: {message.text}"))
    page.on("dialog", lambda dialog: dialog.accept())  # the revoke form asks first (web.js): yes
    log_in(page, hub, "bob")
    page.goto(web_url(hub, object_path(folder["oaio_id"])))

    # "Download as zip" of a sub-folder: the status page reloads itself until the zip is ready
    page.get_by_role("link", name="2026/").click()
    page.get_by_role("button", name="Download this folder as zip").click()
    page.wait_for_url(re.compile(r"/web/archive/"))
    page.get_by_role("link", name="Download the zip").wait_for(timeout=60_000)
    screenshot(page, "hub-web-archive-ready")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the zip").click()
    assert download.value.suggested_filename == "2026.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == {
            "2026/q1.csv": b"a,b\n1,2\n",
            "2026/deep/notes.md": b"# notes\n",
        }

    # a link to one file, made on the links page, fetched without an account, then revoked
    page.goto(web_url(hub, object_path(folder["oaio_id"])))
    page.get_by_role("link", name="Links of Reports").click()
    page.get_by_label("File or folder (empty: everything)").fill("plan.txt")
    page.get_by_role("button", name="Make link").click()
    assert page.get_by_role("status").filter(has_text="Link to plan.txt made").is_visible()
    url = page.get_by_role("textbox", name="Link to plan.txt").input_value()
    screenshot(page, "hub-web-links")
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == b"the plan"
    page.get_by_role("button", name="Revoke the link to plan.txt").click()
    assert page.get_by_role("status").filter(has_text="Link revoked").is_visible()
    assert page.get_by_role("cell", name="revoked").is_visible()
    deadline = time.monotonic() + 10
    while (answer := requests.get(url, timeout=30)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer.status_code == 410
    assert not [line for line in seen if "Content Security Policy" in line], seen


def test_a_reader_may_not_make_links(page: Any, hub: RunningHub, hub_session: Callable[..., HubSession]) -> None:
    bob = hub_session(hub, "bob")
    folder = make_folder(bob, "Reports", FILES)
    assert bob.post("subscribe/", json={"oaio_id": folder["oaio_id"], "username": "carol", "access_right": "r"}).ok
    log_in(page, hub, "carol")
    page.goto(web_url(hub, object_path(folder["oaio_id"], "links")))
    assert page.get_by_text("Only its owner and its managers may make or see links").is_visible()
    assert page.get_by_role("button", name="Make link").count() == 0


def test_password_folder_link_in_a_browser(page: Any, hub: RunningHub, hub_session: Callable[..., HubSession]) -> None:
    """No account: the link's page asks for the password, then reloads itself while the zip is made, then the
    download starts."""
    bob = hub_session(hub, "bob")
    folder = make_folder(bob, "Reports", FILES)
    link = bob.post("hub/links/", json={"oaio_id": folder["oaio_id"], "path": "2026", "password": "pw 2"}).json()
    page.goto(link["url"])
    assert page.get_by_role("heading", name="This link needs a password").is_visible()
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Open").click()
    assert page.get_by_role("alert").filter(has_text="not right").is_visible()
    page.get_by_label("Password").fill("pw 2")
    screenshot(page, "hub-web-link-password")
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Open").click()
    assert download.value.suggested_filename == "2026.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["2026/deep/notes.md", "2026/q1.csv"]
