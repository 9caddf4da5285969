"""``oaiod storage test`` and ``oaiod storage ls`` against a real folder and a real WebDAV server."""

from __future__ import annotations

from pathlib import Path

import pytest
import storage_servers as servers
from click.testing import CliRunner
from storage_stores import running_webdav

from oaiod.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["storage", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_round_trip_on_a_local_folder(tmp_path: Path) -> None:
    code, output = run("test", "Local", f"root_folder={tmp_path}", "--size-mib", "3")
    assert code == 0, output
    assert "storage test passed: all 11 steps" in output and "put big" in output and "server-side" in output
    assert list(tmp_path.iterdir()) == []  # the scratch prefix is gone


def test_ls_lists_keys_under_a_prefix(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f ä.txt").write_bytes(b"123")
    (tmp_path / "ab").write_bytes(b"x")
    code, output = run("ls", "Local", f"root_folder={tmp_path}", "a")
    assert (code, output) == (0, "a/b/f ä.txt\n")
    code, output = run("ls", "-l", "Local", f"root_folder={tmp_path}")
    assert code == 0 and "3  " in output and "ab" in output


def test_bad_arguments_exit_with_the_reason(tmp_path: Path) -> None:
    code, output = run("test", "Local", f"root_folder={tmp_path / 'missing'}")
    assert code == 2 and "is not an existing folder" in output
    code, output = run("test", "Local", "root=x")
    assert code == 2 and "root" in output
    code, output = run("test", "WebDav", "url=https://h", "password=inline")
    assert code == 2 and "must not be on a command line" in output
    code, output = run("test", "Nowhere")
    assert code == 2 and "unknown storage host" in output


@pytest.mark.integration
def test_round_trip_on_webdav(request: pytest.FixtureRequest) -> None:
    server = running_webdav(request)
    env = {"DAV_PASSWORD": servers.WEBDAV_PASSWORD}
    args = ("WebDav", f"url={server.url}", "root_folder=cli", f"username={servers.WEBDAV_USER}")
    code, output = run("test", *args, "password_env=DAV_PASSWORD", env=env)
    assert code == 0, output
    assert "storage test passed: all 11 steps" in output
    code, output = run("ls", *args, "password_env=DAV_PASSWORD", env=env)
    assert (code, output) == (0, "")


@pytest.mark.integration
def test_webdav_wrong_password_fails_with_the_reason(request: pytest.FixtureRequest) -> None:
    server = running_webdav(request)
    args = ("WebDav", f"url={server.url}", f"username={servers.WEBDAV_USER}", "password_env=WRONG")
    code, output = run("test", *args, env={"WRONG": "nope"})
    assert code == 1
    assert "StoragePermissionDenied" in output and "401" in output
