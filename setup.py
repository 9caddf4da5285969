"""Packaging glue: ships the top-level ``migrations/`` folder inside the wheel as ``oaiod._migrations``.

Alembic scripts live at the repository top level (where people look for them), but a plain ``pip install .``
must carry them, so they are mapped into the package namespace here.
"""

from setuptools import find_namespace_packages, find_packages, setup

code = find_packages(include=["oaiod", "oaiod.*"])
migrations = [
    "oaiod._migrations" + name[len("migrations") :]
    for name in find_namespace_packages(include=["migrations", "migrations.*"])
    if "__pycache__" not in name
]
setup(
    packages=code + migrations,
    package_dir={"oaiod._migrations": "migrations"},
    package_data={
        "oaiod": ["py.typed"],
        "oaiod.hub.web": ["templates/*.html", "static/*"],
        "oaiod._migrations": ["*.ini", "**/*.mako", "**/*.py", "*.md"],
        "oaiod.daemon.ui": ["templates/*.html", "static/*"],  # the daemon's status page
    },
)
