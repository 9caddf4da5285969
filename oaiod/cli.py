"""The ``oaiod`` command: one click group whose sub-groups live next to the part they drive.

Sub-groups are imported only when used, so ``oaiod ctl status`` does not pay for importing the hub.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

import click

from oaiod import __version__

#: command name -> "module:attribute" of its click command or group
SUBCOMMANDS: dict[str, str] = {
    "run": "oaiod.daemon.cli:run",
    "ctl": "oaiod.daemon.cli:ctl",
    "service": "oaiod.daemon.cli:service",
    "hub": "oaiod.hub.cli:hub",
    "storage": "oaiod.storage.cli:storage",
}


class LazyGroup(click.Group):
    """A group that imports each sub-command from :data:`SUBCOMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module_name, attr = SUBCOMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)  # SUBCOMMANDS names click commands
            return cast(click.Command, command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oaiod")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OAIOD_CONFIG",
    help="Config file (TOML), or the name of one in the config dir (-c work: ~/.config/oaiod/work.toml); "
    "without one, embedded defaults are used.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Keep folders in sync across devices through an oaio server."""
    ctx.obj = {"config_path": config_path}


if __name__ == "__main__":  # pragma: no cover
    main()
