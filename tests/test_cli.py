"""Every ``oaiod`` command answers ``--help``, and says in one line what it does."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from oaiod import __version__
from oaiod.cli import main


def _walk(group: click.Group, ctx: click.Context, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += _walk(command, click.Context(command, parent=ctx, info_name=name), (*path, name))
    return found


COMMANDS = _walk(main, click.Context(main, info_name="oaiod"), ())


def test_the_tree_has_every_part() -> None:
    tops = {path[0] for path, _ in COMMANDS}
    assert {"run", "ctl", "service", "hub", "storage"} <= tops


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_is_one_line_that_says_what_it_does(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    summary = (command.help or "").strip().splitlines()
    assert summary and summary[0].endswith("."), f"oaiod {' '.join(path)}: no one-line help"
    assert len(summary[0]) <= 100


def test_version_from_an_installed_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oaiod.cli", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and __version__ in result.stdout
