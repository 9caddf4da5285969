"""Schema upgrades with Alembic for the hub's and the daemon's databases.

The scripts live in the top-level ``migrations/`` folder, one Alembic environment per database
(``migrations/hub``, ``migrations/daemon``). A wheel carries them as ``oaiod._migrations``; a source checkout
(editable install) reads them in place.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from alembic import command
from alembic.config import Config


def migrations_root() -> Path:
    """The folder holding one Alembic environment per database."""
    try:
        root = Path(str(importlib.resources.files("oaiod._migrations")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent / "migrations"
    if not root.is_dir():  # pragma: no cover - a broken install
        raise RuntimeError(f"oaiod's migrations are missing (looked in {root})")
    return root


def alembic_config(environment: str, url: str) -> Config:
    """An Alembic config for ``environment`` (``hub`` or ``daemon``) against database ``url``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_root() / environment))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(environment: str, url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call on every start."""
    command.upgrade(alembic_config(environment, url), revision)
