"""Local paths ⇄ the placeholder form of ``_root_path`` (``{doc}/…``, ``~/…``, absolute), and where a folder object
from the server may live on this device.

A ``_root_path`` from the server is hostile input (design §1): :meth:`PathMapper.resolve_root` resolves it
(placeholder, ``~``, ``..``, symlinks of existing parents) and accepts the result only when it lies inside one of
this device's synced roots and outside the state directory; otherwise the caller maps the object under the client
root (:meth:`PathMapper.fallback_root`). Nothing here touches the disk except to resolve symlinks.

The placeholders are those of the published client (``ae.paths``) that name per-user folders: ``{doc}`` the
documents folder, ``{usr}`` the user data folder; ``~`` the home folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from oaiod.errors import ValidationError
from oaiod.model import fitted_name, split_root_path, validate_file_path, validate_root_path


def default_placeholders(home: Path) -> dict[str, Path]:
    """The per-user placeholders of the published client, for ``home``."""
    if sys.platform in ("win32", "cygwin"):
        usr = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        usr = home / "Library" / "Application Support"
    else:
        usr = home / ".config"
    return {"doc": home / "Documents", "usr": usr}


def _resolved(path: Path) -> Path:
    """``path`` made absolute with ``..`` collapsed and the symlinks of its existing part resolved."""
    return Path(os.path.realpath(os.path.normpath(path)))


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


class PathMapper:
    """Maps between local folders and placeholder paths for one device.

    ``roots`` are this device's synced roots (the client root first); ``state_dir`` is never a place to write.
    """

    def __init__(
        self,
        client_root: Path,
        state_dir: Path,
        *,
        home: Path | None = None,
        placeholders: dict[str, Path] | None = None,
    ) -> None:
        self.home = Path(home or Path.home())
        self.placeholders = placeholders if placeholders is not None else default_placeholders(self.home)
        self.client_root = _resolved(client_root)
        self.state_dir = _resolved(state_dir)

    def to_placeholder(self, local: Path) -> str:
        """``{doc}/…`` when under the documents folder (longest placeholder wins), ``~/…`` under home, else absolute."""
        local = _resolved(local)
        best: tuple[int, str] | None = None
        for name, folder in self.placeholders.items():
            folder = _resolved(folder)
            if is_inside(local, folder) and (best is None or len(folder.parts) > best[0]):
                rest = local.relative_to(folder).as_posix()
                best = (len(folder.parts), f"{{{name}}}" + ("" if rest == "." else "/" + rest))
        if best is not None:
            return best[1]
        home = _resolved(self.home)
        if is_inside(local, home):
            rest = local.relative_to(home).as_posix()
            return "~" if rest == "." else "~/" + rest
        return local.as_posix()

    def expand(self, root_path: str) -> Path | None:
        """The absolute path a placeholder path names here, or None when it names nothing usable (unknown
        placeholder, relative path, malformed)."""
        try:
            validate_root_path(root_path)
        except ValidationError:
            return None
        name, rest = split_root_path(root_path)
        if name is not None:
            base = self.placeholders.get(name)
            if base is None:
                return None
            return Path(os.path.normpath(str(base) + "/" + rest.lstrip("/")))
        if rest == "~" or rest.startswith("~/"):
            return Path(os.path.normpath(str(self.home) + rest[1:]))
        if not os.path.isabs(rest):
            return None
        return Path(os.path.normpath(rest))

    def resolve_root(self, root_path: str, synced_roots: Iterable[Path]) -> Path | None:
        """Where a server's ``_root_path`` may live here: inside a synced root and outside the state dir, else None.

        The path is resolved first (``..`` collapsed, symlinked parents followed), so neither ``{usr}/../..`` nor a
        symlink inside a root leads out of it.
        """
        expanded = self.expand(root_path)
        if expanded is None:
            return None
        target = _resolved(expanded)
        if is_inside(target, self.state_dir) or is_inside(self.state_dir, target):
            return None
        for root in synced_roots:
            if is_inside(target, _resolved(root)):
                return target
        return None

    def fallback_root(self, name: str, taken: Iterable[Path], suffix: str = "") -> Path:
        """``client_root/<name><suffix>``, with `` (2)``, `` (3)``… when that folder is taken by another object."""
        safe = safe_folder_name(name)
        taken_set = {_resolved(path) for path in taken}
        for number in range(1, 10_000):
            addition = suffix + (f" ({number})" if number > 1 else "")
            candidate = self.client_root / fitted_name(safe, addition, extension=False)
            if _resolved(candidate) not in taken_set:
                return candidate
        raise ValidationError("_root_path", f"no free folder name for {name!r} under {self.client_root}")


def safe_folder_name(name: str) -> str:
    """One safe path component from a hostile name (the last component of a path; ``object`` when none is usable)."""
    name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    if name.startswith("{") and "}" in name:
        name = name.split("}", 1)[1]
    name = name.lstrip(".") or "object"
    try:
        validate_file_path(name, "_name")
    except ValidationError:
        return "object"
    return name
