"""The web app in a real browser (Debian's chromium through Playwright, ``tests/browser.py``): log in, browse a
folder tree, download a file and an old version, restore a version, share with a user who then sees it, a refused
user, a hostile file name shown as text, and no Content-Security-Policy violation on any page. Screenshots of the
main pages go to ``build/screenshots`` for review."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser import screenshot
from tests.conftest import HubSession, RunningHub
from tests.web.helpers import make_folder, new_version, object_path, web_url

HOSTILE = "<img src=x onerror=alert(1)>.txt"


def log_in(page: Any, hub: RunningHub, username: str) -> None:
    page.goto(web_url(hub, "objects"))  # anonymous: sent to the login page, and back after it
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(hub.users[username])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/web/objects$"))


def watch_console(page: Any) -> list[str]:
    """Every console message a page logs (a CSP violation or a script error shows up here) and every dialog."""
    seen: list[str] = []
    page.on("console", lambda message: seen.append(f"{message.type}: {message.text}"))
    page.on("dialog", lambda dialog: (seen.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return seen


@pytest.fixture
def folder(hub: RunningHub, hub_session: Callable[..., HubSession]) -> dict[str, Any]:
    bob = hub_session(hub, "bob")
    first = make_folder(bob, "Reports", {"plan.txt": b"first plan", "2026/q1.csv": b"a,b\n1,2\n", HOSTILE: b"x"})
    return new_version(bob, first, {"plan.txt": b"second plan", "2026/q1.csv": b"a,b\n1,2\n", HOSTILE: b"x"}) | {
        "first_stamp": first["client_stamp"]
    }


def test_browse_download_and_restore(page: Any, hub: RunningHub, folder: dict[str, Any], tmp_path: Path) -> None:
    seen = watch_console(page)
    log_in(page, hub, "bob")
    screenshot(page, "hub-web-objects")
    page.get_by_role("link", name="Reports", exact=True).click()
    page.get_by_role("link", name="2026/").click()
    assert page.get_by_role("link", name="q1.csv", exact=True).is_visible()
    page.get_by_role("link", name="Reports", exact=True).first.click()
    # the hostile name is text: a cell holding it, and no <img> element anywhere on the page
    assert page.get_by_role("link", name=HOSTILE, exact=True).is_visible()
    assert page.locator("img").count() == 0
    screenshot(page, "hub-web-folder")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "hub-web-folder-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    with page.expect_download() as download:
        page.get_by_role("link", name="Download plan.txt").click()
    assert Path(download.value.path()).read_bytes() == b"second plan"
    assert download.value.suggested_filename == "plan.txt"

    page.get_by_role("link", name="plan.txt", exact=True).click()
    screenshot(page, "hub-web-file-versions")
    rows = page.get_by_role("row")
    assert rows.count() == 3  # the header and two versions
    with page.expect_download() as old:
        page.get_by_role("link", name=re.compile("Download the version of")).last.click()
    assert Path(old.value.path()).read_bytes() == b"first plan"
    page.get_by_role("button", name=re.compile("Restore the version of")).click()
    assert page.get_by_role("status").filter(has_text="Restored plan.txt").is_visible()
    assert page.get_by_role("row").count() == 4
    with page.expect_download() as restored:
        page.get_by_role("link", name=re.compile("Download the version of")).first.click()
    assert Path(restored.value.path()).read_bytes() == b"first plan"
    assert not [line for line in seen if "Content Security Policy" in line or line.startswith("dialog")], seen


def test_share_then_the_other_user_sees_it(browser: Any, page: Any, hub: RunningHub, folder: dict[str, Any]) -> None:
    log_in(page, hub, "bob")
    page.goto(web_url(hub, object_path(folder["oaio_id"], "sharing")))
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Right").select_option("r")
    page.get_by_role("button", name="Share").click()
    assert page.get_by_role("status").filter(has_text="carol is now reader").is_visible()
    screenshot(page, "hub-web-sharing")

    context = browser.new_context(accept_downloads=True)
    try:
        carol = context.new_page()
        log_in(carol, hub, "carol")
        carol.get_by_role("link", name="Reports").click()
        assert carol.get_by_role("link", name="plan.txt", exact=True).is_visible()
        assert carol.get_by_role("button", name=re.compile("Restore")).count() == 0  # read only
        carol.goto(web_url(hub, object_path(folder["oaio_id"], "sharing")))
        assert carol.get_by_text("Only its owner and its managers may share").is_visible()
    finally:
        context.close()


def test_user_without_rights_is_refused(page: Any, hub: RunningHub, folder: dict[str, Any]) -> None:
    log_in(page, hub, "carol")
    answer = page.goto(web_url(hub, object_path(folder["oaio_id"])))
    assert answer.status == 404 and page.get_by_role("heading", name="Not found").is_visible()
    answer = page.goto(web_url(hub, "admin/users"))
    assert answer.status == 403 and page.get_by_role("heading", name="Not allowed").is_visible()
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    screenshot(page, "hub-web-refused")


def test_supervisor_adds_a_user(page: Any, hub: RunningHub) -> None:
    log_in(page, hub, "alice")
    page.get_by_role("link", name="Users").click()
    form = page.locator("form", has=page.get_by_role("button", name="Add user"))
    form.get_by_label("User name").fill("erin")
    form.get_by_label("Password").fill("a long password")
    form.get_by_role("button", name="Add user").click()
    assert page.get_by_role("status").filter(has_text="Added erin").is_visible()
    screenshot(page, "hub-web-users")
    page.get_by_role("link", name="Health").click()
    assert page.get_by_text("The hub is ready.").is_visible()
