"""What ``OBJ`` may be on the ``ctl`` command line, and which object it names.

People do not type object ids (``oaiod⁄⁄alice@laptop⁄work⁄20261204…``, defused). ``OBJ`` may be, in this order:

1. an object's id, as ``ctl ls --json`` shows it, or in its plain form (``oaiod://alice@laptop/work/…``);
2. a path (the CLI makes it absolute): the synced folder, or any file or folder inside one — the object is the one
   whose folder holds it most closely (a folder added inside the client root is its own object);
3. an object's name — its folder's name (``work`` for ``~/work``); an app's data or file object's ``_name``;
4. a unique prefix of an id or of a name.

A handle naming several objects is refused with the candidates: a wrong guess never picks an object. One naming
none is passed on when it is a valid id (an object whose ``ctl add`` is still queued, or one on the server only: the
command itself then says it does not know it), else refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oaiod.daemon.ctl.protocol import CommandFailed
from oaiod.errors import FailureKind, ValidationError
from oaiod.model import URI_SEP_STR, URI_SEP_UNICODE_CHAR, dedefuse, defuse, validate_oaio_id


@dataclass(frozen=True)
class Known:
    """One object as handles see it: its id, its local folder ("" for none) and its name: ``label`` (an app's
    object's ``_name``) or else its folder's name."""

    oaio_id: str
    folder: str = ""
    label: str = ""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return os.path.basename(self.folder.rstrip("/")) if self.folder else ""


def resolve(handle: str, objects: Iterable[Known]) -> str:
    """The id of the object ``handle`` names (see the module docstring); :class:`CommandFailed` when none or
    several do. An id that is not synced here is passed on as it is (the server may know it: ``versions``)."""
    known = list(objects)
    if not handle:
        raise CommandFailed("OBJ is empty: give a path, a name or an id (see: oaiod ctl ls)")
    if URI_SEP_STR in handle:
        handle = defuse(handle)  # the plain form of an id
    if any(item.oaio_id == handle for item in known):
        return handle
    if os.path.isabs(handle):
        return _by_path(Path(handle), known)
    named = [item for item in known if item.name == handle]
    prefixed = [item for item in known if _starts(item, handle)]
    for matches, what in ((named, "is the name of"), (prefixed, "starts")):
        if len(matches) == 1:
            return matches[0].oaio_id
        if len(matches) > 1:
            shown = ", ".join(f"{item.oaio_id} ({item.folder or 'no folder'})" for item in matches[:5])
            raise CommandFailed(f"{handle!r} {what} {len(matches)} objects: {shown}; give a path or a longer prefix")
    if URI_SEP_UNICODE_CHAR in handle or _is_id(handle):
        return handle  # an id not synced here (yet: an add still queued; or on the server only): the command checks it
    raise CommandFailed(f"no synced object is named {handle!r} (see: oaiod ctl ls)", FailureKind.NOT_FOUND)


def _is_id(handle: str) -> bool:
    try:
        validate_oaio_id(handle)
    except ValidationError:
        return False
    return True


def _starts(item: Known, prefix: str) -> bool:
    return item.oaio_id.startswith(prefix) or dedefuse(item.oaio_id).startswith(prefix) or item.name.startswith(prefix)


def _by_path(path: Path, known: list[Known]) -> str:
    target = _real(path)
    best: tuple[int, str] | None = None
    for item in known:
        if not item.folder:
            continue
        folder = _real(Path(item.folder))
        if target == folder or folder in target.parents:
            depth = len(folder.parts)
            if best is None or depth > best[0]:
                best = (depth, item.oaio_id)
    if best is None:
        raise CommandFailed(f"{path} is not inside a synced folder (see: oaiod ctl ls)")
    return best[1]


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return Path(os.path.abspath(path))
