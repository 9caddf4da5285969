"""The daemon's status page (``oaiod ctl ui``, :mod:`oaiod.daemon.ui`) and ``ctl activity``, against real daemon
processes syncing with a real hub, in a real browser (Debian's chromium via Playwright, ``tests/browser.py``).

Guarded: the token file is 0600 and required (no token → 403, a wrong ``Host`` → 403 even with it, a cross-site
POST → 403), the login link works once and the token is in no process's command line and no log. Live: a file
written into the folder shows up on the open page through server-sent events, without a reload; pause and resume
work from the page; a large upload (bandwidth-limited so it lasts) shows in ``ctl activity`` and on the page.
Hostile names (a folder and a file named ``<img src=x onerror=…>``) are rendered as text, and a conflict shows
both files side by side. Screenshots of the pages go to ``build/screenshots`` for review.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.browser import screenshot
from tests.daemon.daemon_helpers import wait_for
from tests.daemon.e2e_helpers import first_cycles, root_of

pytestmark = pytest.mark.integration

HOSTILE = "<img src=x onerror=alert(1)>"


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def ctl_json(config: Path, *args: str) -> Any:
    done = ctl(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, dict[str, str], str]:
    """One plain HTTP request (no cookies, no redirects followed): status, headers (lower-case), body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode()
    finally:
        conn.close()


def start(cluster: Any, device: str, *, ui: str = "", **options: Any) -> Any:
    """A daemon of alice with ``ui`` appended to its config (the [ui] section)."""
    config = cluster.config(device, **options)
    if ui:
        config.write_text(config.read_text() + ui)
    proc = cluster.start(device)
    first_cycles(proc)
    return proc


def login(page: Any, config: Path) -> str:
    """Open the page as ``ctl ui --print`` says (its one-time link); returns the page's base URL."""
    done = ctl(config, "ui", "--print")
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    page.goto(link)
    assert page.url.endswith("/") and "code=" not in page.url  # the link's code does not stay in the address bar
    return page.url


def test_the_page_is_guarded_by_the_token_the_host_and_the_origin(cluster: Any) -> None:
    a = start(cluster, "dev-a")
    cfg, state_dir = a.config_file, a.config.paths.state_dir
    token_file = state_dir / "ui-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    answer = ctl_json(cfg, "ui")
    base, port = answer["url"], urllib.parse.urlsplit(answer["url"]).port
    assert base == f"http://127.0.0.1:{port}/" and answer["token_file"] == str(token_file)
    assert token not in json.dumps(answer)  # ctl hands out a one-time login code, never the token

    assert request(base)[0] == 403  # no token
    assert request(base, headers={"Cookie": "oaiod_ui=wrong"})[0] == 403
    assert request(base, headers={"X-API-Key": token, "Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
    assert request(base, headers={"X-API-Key": token, "Host": f"localhost:{port}"})[0] == 403
    status, headers, body = request(base, headers={"X-API-Key": token})
    assert status == 200 and ("Up to date" in body or "Syncing" in body)  # a watcher-started cycle may be running
    wait_for(lambda: "Up to date" in request(base, headers={"X-API-Key": token})[2], 60, "the idle summary")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"

    csrf = body.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-API-Key": token}
    evil = {**form, "Origin": "http://evil.example"}
    assert request(base + "action", "POST", evil, f"csrf={csrf}&action=pause")[0] == 403  # cross-site
    assert request(base + "action", "POST", form, "csrf=stale&action=pause")[0] == 403  # no CSRF field
    assert (
        request(base + "action", "POST", {"Content-Type": form["Content-Type"]}, f"action=pause&csrf={csrf}")[0] == 403
    )
    assert ctl_json(cfg, "status")["state"] != "paused"  # none of them acted
    status, headers, _ = request(
        base + "action", "POST", {**form, "Origin": base.rstrip("/")}, f"csrf={csrf}&action=pause"
    )
    assert status == 303 and headers["location"] == "/"
    assert ctl_json(cfg, "status")["state"] == "paused"
    assert ctl(cfg, "resume").returncode == 0

    link = ctl(cfg, "ui", "--print").stdout.strip()
    status, headers, _ = request(link)
    assert status == 303 and f"oaiod_ui={token}" in headers["set-cookie"]
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert request(link)[0] == 403  # a login link works once
    assert request(base, headers={"Cookie": f"oaiod_ui={token}"})[0] == 200

    # bad input is a 4xx or a note on the page, never a 5xx
    key = {"X-API-Key": token}
    for path in ("file?path=%00", "file?path=relative", "file?path=/not/synced", "folder?obj=nothing",
                 "conflict?obj=a&path=b&copy=c", "static/..%2Fapp.py", "static/nothing.css", "nowhere"):  # fmt: skip
        assert 200 <= request(base + path, headers=key)[0] < 500, path
    for body in ("action=nothing", "action=restore&target=%2Fnot%2Fsynced&stamp=x", "action=exclude&path=rel"):
        status, headers, _ = request(base + "action", "POST", form, f"csrf={csrf}&{body}")
        assert status in (303, 400), body
    assert "failed" in request(base, headers=key)[2]  # the last one's note says why

    # the token is in no command line (the daemon's, ctl's) and in no log line
    for pid in [a.proc.pid, *(int(p) for p in os.listdir("/proc") if p.isdigit())]:
        try:
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    assert token not in a.stderr() and token not in "\n".join(ctl_json(cfg, "log", "-n", "500"))

    # a token file that others can read is not trusted: the next start makes a new one
    a.stop()
    token_file.chmod(0o644)
    b = cluster.start("dev-a")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and token_file.read_text().strip() != token
    b.stop()


def test_a_disabled_page_listens_nowhere_and_ctl_ui_says_so(cluster: Any) -> None:
    a = start(cluster, "dev-off", ui="[ui]\nenabled = false\n")
    done = ctl(a.config_file, "ui", "--print")
    assert done.returncode == 1 and "status page is off" in done.stderr
    assert not (a.config.paths.state_dir / "ui-token").exists()


def test_the_page_shows_a_sync_live_and_pauses_and_resumes(cluster: Any, page: Any) -> None:
    a = start(cluster, "dev-live")
    cfg, root = a.config_file, root_of(a)
    login(page, cfg)
    history = page.locator("#live-history [data-newest]")
    newest = history.get_attribute("data-newest")
    page.evaluate("window.notReloaded = true")
    wait_for(lambda: page.locator("#live-indicator").inner_text() == "Live", 30, "the event stream")
    screenshot(page, "daemon-status")

    (root / "written-while-watching.txt").write_text("a change the page must show without a reload")
    wait_for(lambda: history.get_attribute("data-newest") != newest, 120, "the new history row on the page")
    assert page.evaluate("window.notReloaded") is True  # updated in place, by server-sent events
    assert int(page.locator("body").get_attribute("data-updates") or 0) >= 1

    page.get_by_role("button", name="Pause").click()
    page.get_by_text("Paused (changes are recorded").wait_for()
    assert page.get_by_role("status").filter(has_text="Paused").count() >= 1  # the action's note
    assert ctl_json(cfg, "status")["state"] == "paused"
    screenshot(page, "daemon-status-paused")
    page.get_by_role("button", name="Resume").click()
    wait_for(lambda: ctl_json(cfg, "status")["state"] in ("idle", "syncing"), 30, "resumed")
    page.get_by_role("button", name="Pause").wait_for()

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "daemon-status-phone")


def test_exclude_include_and_restore_from_the_page(cluster: Any, page: Any) -> None:
    a = start(cluster, "dev-act")
    cfg, root = a.config_file, root_of(a)
    (root / "sub").mkdir()
    (root / "sub" / "kept-elsewhere.txt").write_text("stays on the server")
    (root / "notes.txt").write_text("version one")
    ctl_json(cfg, "sync", "--wait")
    (root / "notes.txt").write_text("version two")
    ctl_json(cfg, "sync", "--wait")
    login(page, cfg)

    page.get_by_label("Stop syncing a folder").fill(str(root / "sub"))
    page.get_by_role("button", name="Exclude", exact=True).click()
    page.get_by_text("1 file(s), 19 B, under it go to this device's trash").wait_for()  # asks first, as ctl does
    assert (root / "sub" / "kept-elsewhere.txt").exists()
    screenshot(page, "daemon-exclude-confirm")
    page.get_by_role("button", name="Exclude and move them to the trash").click()
    page.get_by_role("button", name="Sync it again").wait_for()
    wait_for(lambda: not (root / "sub" / "kept-elsewhere.txt").exists(), 60, "the excluded copy moved to the trash")
    assert [row["path"] for row in ctl_json(cfg, "exclude", "list")] == ["sub"]
    page.get_by_role("button", name="Sync it again").click()
    wait_for(lambda: (root / "sub" / "kept-elsewhere.txt").exists(), 120, "the folder back from the server")

    page.get_by_label("A file's state and versions").fill(str(root / "notes.txt"))
    page.get_by_role("button", name="Show").click()
    restore = page.get_by_role("button", name="Restore this version")
    assert restore.count() == 2  # newest first: version two, version one
    screenshot(page, "daemon-file-versions")
    restore.nth(1).click()
    page.get_by_text("Restored ").wait_for()
    wait_for(lambda: (root / "notes.txt").read_text() == "version one", 60, "the old version back")


def test_ctl_activity_and_the_page_show_a_transfer_in_flight(cluster: Any, page: Any) -> None:
    a = start(cluster, "dev-big", upload=400_000)  # 400 kB/s: a 6 MB file takes ~15 s to upload
    cfg, root = a.config_file, root_of(a)
    assert "no transfers" in ctl(cfg, "activity").stdout
    login(page, cfg)
    (root / "big.bin").write_bytes(os.urandom(6_000_000))

    def uploading() -> Any:
        shown = ctl_json(cfg, "activity")
        return next((t for t in shown["transfers"] if t["direction"] == "upload"), None)

    transfer = wait_for(uploading, 60, "the upload in ctl activity", interval=0.2)
    assert transfer["path"] == "big.bin" and transfer["total"] == 6_000_000 and 0 <= transfer["done"] <= 6_000_000
    line = ctl(cfg, "activity").stdout
    assert "upload big.bin: " in line and " of 6.0 MB" in line
    page.get_by_text("↑ Uploading").wait_for()
    assert page.locator("#live-activity progress").get_attribute("max") == "6000000"
    screenshot(page, "daemon-status-transfer")

    follow = subprocess.Popen(
        [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(cfg), "ctl", "activity", "--follow", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        seen: list[Any] = []
        started = time.monotonic()
        assert follow.stdout is not None
        for text in follow.stdout:
            seen.append(json.loads(text))
            if not seen[-1]["transfers"] or time.monotonic() - started > 120:
                break
        assert any(item["transfers"] for item in seen) and not seen[-1]["transfers"]  # it followed to the end
    finally:
        follow.terminate()
        follow.wait(30)
    page.get_by_text("Nothing is being transferred.").wait_for()


def test_hostile_names_are_text_and_a_conflict_shows_both_files(cluster: Any, page: Any) -> None:
    a = start(cluster, "dev-names")
    cfg, root = a.config_file, root_of(a)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    hostile = cluster.base / HOSTILE
    hostile.mkdir()
    (hostile / f"{HOSTILE}.txt").write_text("hostile")
    assert ctl_json(cfg, "add", str(hostile), "--wait")["registered"] is True

    (root / "notes.txt").write_text("one\ntwo\nthree\n")
    copy = root / "notes (conflicted copy from dev-b 2026-01-02 030405).txt"
    copy.write_text("one\nTWO\nthree\nfour\n")
    ctl_json(cfg, "sync", "--wait")
    wait_for(lambda: ctl_json(cfg, "conflicts"), 60, "the conflict listed")

    login(page, cfg)
    folders = page.locator("#live-folders")
    folders.get_by_text(HOSTILE, exact=True).wait_for()  # the folder's name, as text
    assert page.locator("img").count() == 0
    screenshot(page, "daemon-status-hostile")

    page.get_by_label("A file's state and versions").fill(str(hostile / f"{HOSTILE}.txt"))
    page.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name=f"File: {hostile / HOSTILE}.txt").wait_for()
    assert page.locator("img").count() == 0

    def up_to_date() -> bool:
        if "State: up to date" in page.locator("main").inner_text():
            return True
        page.reload()
        return False

    wait_for(up_to_date, 60, "the file up to date", interval=0.5)
    screenshot(page, "daemon-file")

    page.goto(page.url.split("/file", 1)[0] + "/")
    page.locator("#live-conflicts a").first.click()
    page.get_by_role("heading", name="Conflict: notes.txt").wait_for()
    changed = page.locator("table.diff tr.changed")
    assert changed.count() == 1 and "two" in changed.inner_text() and "TWO" in changed.inner_text()
    assert "four" in page.locator("table.diff tr.added").inner_text()
    screenshot(page, "daemon-conflict")
    assert alerts == []


# -- the parts without a daemon ----------------------------------------------------------------------------------


def test_a_conflicts_text_is_aligned_and_other_files_are_compared_by_size(tmp_path: Path) -> None:
    from oaiod.daemon.ui import compare

    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "b.txt").write_text("one\n2\nthree\nfour\n")
    (tmp_path / "c.bin").write_bytes(b"\0\1\2")
    left = compare.side(compare.inside(tmp_path, "a.txt"), "a.txt")
    shown = compare.compare(left, compare.side(compare.inside(tmp_path, "b.txt"), "b.txt"))
    assert [(row.kind, row.left, row.right) for row in shown.rows] == [
        ("same", "one", "one"),
        ("changed", "two", "2"),
        ("same", "three", "three"),
        ("added", None, "four"),
    ]
    binary = compare.compare(left, compare.side(compare.inside(tmp_path, "c.bin"), "c.bin"))
    assert not binary.as_text and binary.right.size == 3 and binary.rows == []
    (tmp_path / "link").symlink_to("/etc/hostname")
    assert compare.inside(tmp_path, "link") is None and compare.inside(tmp_path, "../x") is None
    assert not compare.side(None, "gone.txt").exists


def test_the_token_file_is_made_0600_and_kept_only_when_safe(tmp_path: Path) -> None:
    from oaiod.daemon.ui.server import LoginCodes, load_token

    path = tmp_path / "state" / "ui-token"
    token = load_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_token(path) == token  # kept across restarts (a script's copy keeps working)
    path.chmod(0o640)
    assert load_token(path) != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    codes = LoginCodes()
    code = codes.new()
    assert codes.use(code) and not codes.use(code) and not codes.use("guessed")


def test_after_an_action_the_page_goes_back_only_to_itself() -> None:
    from oaiod.daemon.ui.app import _back

    assert _back("/file?path=%2Fa") == "/file?path=%2Fa"
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""):
        assert _back(target) == "/"
