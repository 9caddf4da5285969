"""``oaiod hub …``: the admin commands through click's runner, and one real ``oaiod hub serve`` process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from oaiod.cli import main
from oaiod.model import context_encode

COMMANDS = [
    ["hub"],
    ["hub", "serve"],
    ["hub", "user"],
    ["hub", "user", "add"],
    ["hub", "user", "del"],
    ["hub", "user", "passwd"],
    ["hub", "user", "list"],
    ["hub", "storage"],
    ["hub", "storage", "set"],
    ["hub", "storage", "list"],
    ["hub", "storage", "del"],
]


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_a_one_line_help(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    summary = output.split("\n\n")[1].strip()
    assert summary and "\n" not in summary


def test_users(tmp_path: Path, db_url: str) -> None:
    where = ["--data-dir", str(tmp_path / "hub"), "--db-url", db_url]
    assert run("hub", "user", "add", "dave", "--supervisor", "--password-stdin", *where, stdin="s3cret\n")[0] == 0
    assert run("hub", "user", "add", "erin", *where)[0] == 0  # no password: cannot log in
    code, output = run("hub", "user", "list", *where)
    assert code == 0
    assert re.search(r"^dave\tsupervisor\t\d{20}$", output, re.M)
    assert re.search(r"^erin\tno-login\t", output, re.M)
    assert "s3cret" not in output

    code, output = run("hub", "user", "add", "dave", "--password-stdin", *where, stdin="x\n")
    assert code != 0 and output.strip().count("\n") == 0 and "exists" in output
    code, output = run("hub", "user", "add", "fred", "--password-stdin", *where, stdin="")
    assert code != 0 and "stdin" in output
    code, output = run("hub", "user", "add", "bad name", *where)
    assert code != 0 and "username" in output
    assert run("hub", "user", "add", "gail", "--password", "x", *where)[0] != 0  # never on the command line

    assert run("hub", "user", "passwd", "erin", "--password-stdin", *where, stdin="new\n")[0] == 0
    assert "erin\t-\t" in run("hub", "user", "list", *where)[1]
    assert run("hub", "user", "passwd", "nobody", "--password-stdin", *where, stdin="x\n")[0] != 0
    assert run("hub", "user", "del", "erin", *where)[0] == 0
    code, output = run("hub", "user", "del", "erin", *where)
    assert code != 0 and "erin" in output
    assert "erin" not in run("hub", "user", "list", *where)[1]


def test_storage_hosts(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path / "hub")]
    code, output = run("hub", "storage", "set", "Digi", "root_folder=/oaio", "email=a@b.c", "password=hunter2", *where)
    assert code == 0 and "warning: every user of this hub receives password of Digi" in output
    assert "hunter2" not in output
    code, output = run("hub", "storage", "set", "S3", "port:=9000", "secret_key=abc", 'opts:={"x": [1]}', *where)
    assert code == 0 and "receives secret_key of S3" in output and "blob store (csh id Hub)" in output
    code, output = run("hub", "storage", "set", "Local", "root_folder=/srv/oaio", *where)
    assert code == 0 and "warning" not in output  # nothing secret: no warning
    code, output = run("hub", "storage", "list", *where)
    assert code == 0
    assert "hunter2" not in output and "abc" not in output
    assert '"root_folder": "/oaio"' in output and '"port": 9000' in output and '"password": "****"' in output
    assert run("hub", "storage", "set", "X", "novalue", *where)[0] != 0
    assert run("hub", "storage", "set", "X", "bad-key=1", *where)[0] != 0
    assert run("hub", "storage", "set", "X", "n:={oops", *where)[0] != 0
    assert run("hub", "storage", "del", "Digi", *where)[0] == 0
    code, output = run("hub", "storage", "del", "Digi", *where)
    assert code != 0 and "Digi" in output
    assert "Digi" not in run("hub", "storage", "list", *where)[1]


def test_unreachable_database_is_one_line() -> None:
    code, output = run("hub", "user", "list", "--db-url", "postgresql+psycopg://x:y@127.0.0.1:1/none")
    assert code != 0 and output.startswith("Error: cannot open the hub database") and output.count("\n") == 1


@pytest.mark.integration
def test_serve_prints_its_url_and_answers(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "hub")
    assert run("hub", "user", "add", "zoe", "--password-stdin", "--data-dir", data_dir, stdin="pw-zoe\n")[0] == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "oaiod.cli", "hub", "serve", "--data-dir", data_dir, "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "oaiod hub listening on" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(60), "".join(lines)
        url = re.search(r"oaiod hub listening on (http://\S+/api/)", "".join(lines)).group(1)  # type: ignore[union-attr]
        session = requests.Session()
        session.headers.update(context_encode("zoe", "dev", "app"))
        token = session.get(url + "login/", timeout=10).cookies["csrftoken"]
        answer = session.post(
            url + "login/", json={"username": "zoe", "password": "pw-zoe"}, headers={"X-CSRFToken": token}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert session.get(url + "oaio_stampz/", timeout=10).json() == []
        if "PYTHONMALLOC" not in os.environ:  # it re-executed itself (same PID) with glibc's malloc, as `oaiod run`
            assert b"PYTHONMALLOC=malloc" in Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert sum("oaiod hub listening on" in line for line in lines) == 1


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, output = run("hub", "serve", "--data-dir", str(tmp_path / "hub"), "--port", port)
    assert code == 1 and output.startswith("Error: cannot listen on 127.0.0.1:") and output.count("\n") == 1


def test_serve_refuses_a_trusted_proxy_that_is_no_address(tmp_path: Path) -> None:
    code, output = run("hub", "serve", "--data-dir", str(tmp_path / "hub"), "--trusted-proxy", "proxy.example")
    assert code == 2 and "'proxy.example' is neither an IP address nor a network" in output


def test_serve_refuses_workers_on_sqlite_in_one_line(tmp_path: Path) -> None:
    code, output = run("hub", "serve", "--data-dir", str(tmp_path / "hub"), "--workers", "2")
    assert code == 1 and output.count("\n") == 1 and "--workers 2 needs a PostgreSQL database" in output
    assert not (tmp_path / "hub").exists()  # refused before anything was made
