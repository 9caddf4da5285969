"""The client root object (design §1): the one folder object per user that ``client_root`` syncs with, on every
device. Its life cycle, in one place:

* **adopt or create** — a device without one adopts the user's oldest (:func:`root_age`), or registers a new one
  at the next push;
* **switch** — two devices that start at once may both register one; the device using the newer one switches to
  the older when it sees it (:func:`switch_root`: its files merge into it as at a first sync), and so does a device
  whose root was deleted on the server (to the user's oldest other one, else a new one);
* **drop** — the device that registered the newer one deletes it on the server once the merge is committed
  (a ``drop-root`` journal row, :func:`drop_superseded_roots`), so other devices find the merged files there.

:class:`ClientRoot` is what the cycle calls; it keeps whether any drop is pending, so an idle cycle reads no
journal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

from oaiod.engine.context import EngineContext
from oaiod.engine.mapping import is_own_root
from oaiod.engine.ops import new_folder_object, new_folder_row
from oaiod.engine.settings import ROOT_OBJECT_NAME
from oaiod.errors import OaiodError
from oaiod.model import OaiObject, dedefuse, now_stamp
from oaiod.server_api import NotFound, PermissionDenied
from oaiod.state.models import KIND_ROOT, STATUS_ACTIVE, STATUS_NEW, EmptyDirRow, FileRow, JournalRow, ObjectRow

log = logging.getLogger("oaiod.engine")

DROP_ROOT = "drop-root"  #: journal op: delete a client root object this device registered and no longer uses


class ClientRoot:
    """This device's client root object through its life cycle (see the module docstring); the cycle's one handle
    on it. Called under the engine's lock."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._drops_pending = True  # superseded client roots to delete: looked up in the journal at the first cycle

    def row(self) -> ObjectRow | None:
        """The client root's row, None before one is adopted or created."""
        return next((row for row in self.ctx.repo.objects(values=False) if row.kind == KIND_ROOT), None)

    def adopt_or_create(self, listing: list[OaiObject]) -> None:
        """Adopt the user's client root object (the oldest registration in ``listing``, the server's full listing)
        or register one at the next push (design §1)."""
        ctx = self.ctx
        mine = sorted(
            (o for o in listing if is_own_root(o, ctx.settings.username)),
            key=lambda o: root_age(ctx, o.oaio_id),
        )
        root = str(ctx.settings.client_root)
        if mine:
            obj = mine[0]
            log.info("adopting client root object %s for %s", obj.oaio_id, root)
            row = ObjectRow(oaio_id=obj.oaio_id, kind=KIND_ROOT, local_root=root, status=STATUS_ACTIVE)
            row.synced_values = {}
            ctx.repo.save_object(row)
            for newer in mine[1:]:  # left by a race this device lost before a rebuild-index: its files merge here
                self._drops_pending |= queue_root_drop(ctx, newer.oaio_id)
            return
        oaio_id = new_folder_object(ctx, Path(root), KIND_ROOT, name=ROOT_OBJECT_NAME)
        log.info("registered client root object %s for %s locally; the next push sends it", oaio_id, root)

    def meet(self, obj: OaiObject, known: dict[str, ObjectRow]) -> ObjectRow | None:
        """Another client root of this user, listed by the server: switch to it when it is older than ours (a
        registration race) and return its new row (``known`` follows); None when ours is the older one (its device
        merges it into ours)."""
        ctx = self.ctx
        current = next((row for row in known.values() if row.kind == KIND_ROOT), None)
        if current is not None and root_age(ctx, current.oaio_id) <= root_age(ctx, obj.oaio_id):
            log.info("%s is a newer client root of yours; its device merges it into %s", obj.oaio_id, current.oaio_id)
            self._drops_pending |= queue_root_drop(ctx, obj.oaio_id)  # ours, from before a rebuild-index
            return None
        row = switch_root(ctx, current, obj)
        if current is not None:
            known.pop(current.oaio_id, None)
        known[row.oaio_id] = row
        self._drops_pending = True
        return row

    def replace_deleted(self, current: ObjectRow) -> tuple[ObjectRow, OaiObject | None]:
        """Our client root object was deleted on the server (merged into an older one by the device that registered
        it, or deleted by hand): switch to the user's oldest other one, else register a new one; no file is lost.
        Returns the new row and the server's object to pull into it (None: a new registration)."""
        ctx = self.ctx
        others = [o for o in ctx.api.stampz(None).objects if is_own_root(o, ctx.settings.username)]
        others = sorted((o for o in others if o.oaio_id != current.oaio_id), key=lambda o: root_age(ctx, o.oaio_id))
        row = switch_root(ctx, current, others[0] if others else None)
        if not others:
            log.warning("client root object %s was deleted on the server; registering a new one", current.oaio_id)
            return row, None
        return row, others[0]

    def drop_superseded(self) -> None:
        """Delete the client roots this device replaced, once the merge is committed (see
        :func:`drop_superseded_roots`); nothing to read while none is pending."""
        if self._drops_pending:
            self._drops_pending = drop_superseded_roots(self.ctx)


#: the age of a root the hub does not know (not registered yet): newer than any registered one
UNREGISTERED = "9" * 20


def root_age(ctx: EngineContext, oaio_id: str) -> tuple[str, str]:
    """Sort key of this user's client root objects, oldest first, then by id.

    An oaiod hub attests the registration stamp (``hub/origin/``, its own clock, the same for every device). A plain
    oaio server attests nothing, so there the stamp that ends the id is used: only objects the server lists with
    ``C`` for this user are ever compared (:func:`~oaiod.engine.mapping.is_own_root`), so the id is this user's own.
    """
    if "origin" not in ctx.api.features():
        return oaio_id[-20:], oaio_id
    try:
        return ctx.api.origin(oaio_id).registered, oaio_id
    except NotFound:
        return UNREGISTERED, oaio_id


def registered_here(ctx: EngineContext, oaio_id: str) -> bool:
    """True when this device (user, device id and app) registered ``oaio_id``."""
    settings = ctx.settings
    return dedefuse(oaio_id).startswith(f"{settings.app_id}://{settings.username}@{settings.device_id}/")


def switch_root(ctx: EngineContext, current: ObjectRow | None, obj: OaiObject | None) -> ObjectRow:
    """Make ``obj`` (None: a new registration) this device's client root object in place of ``current``.

    One transaction moves the index rows over without a base (``synced_*`` cleared), so the next pull merges the
    local files as a first sync does (design §5: nothing is replaced; a file that differs on both sides keeps the
    local one under its name and the server's as a conflicted copy) and the next push commits them into ``obj``.
    Rows of ignored files are dropped (the new object never had them). When this device registered ``current``,
    a journal row asks to delete it on the server once the merge is committed (:func:`drop_superseded_roots`).
    """
    root = Path(ctx.settings.client_root)
    if obj is None:
        row = new_folder_row(ctx, root, KIND_ROOT, ROOT_OBJECT_NAME)
    else:
        row = ObjectRow(oaio_id=obj.oaio_id, kind=KIND_ROOT, local_root=str(root), status=STATUS_ACTIVE)
        row.synced_values, row.local_dirty = {}, True
    with ctx.repo.session() as s:
        row = s.merge(row)
        s.flush()
        if current is not None:
            old = FileRow.oaio_id == current.oaio_id
            s.execute(sa.delete(FileRow).where(old, sa.or_(FileRow.present.is_(False), FileRow.ignored.is_(True))))
            s.execute(
                sa.update(FileRow)
                .where(old)
                .values(oaio_id=row.oaio_id, synced_sha256=None, synced_stamp="", synced_executable=False)
            )
            s.execute(sa.update(EmptyDirRow).where(EmptyDirRow.oaio_id == current.oaio_id).values(oaio_id=row.oaio_id))
            s.execute(sa.delete(ObjectRow).where(ObjectRow.oaio_id == current.oaio_id))
            if current.status != STATUS_NEW and registered_here(ctx, current.oaio_id):
                stamp = now_stamp()
                s.add(JournalRow(op=DROP_ROOT, oaio_id=current.oaio_id, stamp=stamp, data={}, created=stamp))
    if current is not None:
        ctx.repo.clear_errors_of(current.oaio_id)
        log.warning(
            "client root %s: switching from %s to %s; the local files are merged into it",
            root,
            current.oaio_id,
            row.oaio_id,
        )
        ctx.repo.add_history(row.oaio_id, "switch-root", str(root), f"replaces {current.oaio_id}")
    return row


def queue_root_drop(ctx: EngineContext, oaio_id: str) -> bool:
    """Ask to delete a client root object this device registered but does not use (e.g. seen again after
    ``rebuild-index`` lost the journal); True when newly queued."""
    if not registered_here(ctx, oaio_id) or any(e.op == DROP_ROOT and e.oaio_id == oaio_id for e in ctx.repo.journal()):
        return False
    ctx.repo.journal_add(DROP_ROOT, oaio_id, now_stamp(), "", {})
    return True


def drop_superseded_roots(ctx: EngineContext) -> bool:
    """Delete on the server the client root objects this device registered and replaced, once the merge into the
    one in use is committed (so other devices find the merged files there). True while some remain to delete."""
    pending = False
    for entry in ctx.repo.journal():
        if entry.op != DROP_ROOT:
            continue
        current = next((r for r in ctx.repo.objects(values=False) if r.kind == KIND_ROOT), None)
        if current is None or current.status != STATUS_ACTIVE or current.local_dirty:
            pending = True  # the merge is not committed yet
            continue
        try:
            ctx.api.delete(entry.oaio_id)
        except NotFound:
            pass
        except PermissionDenied as exc:
            log.warning("client root object %s cannot be deleted (%s); leaving it", entry.oaio_id, exc)
        except OaiodError as exc:
            log.info("client root object %s: deleting it failed (%s); trying again next cycle", entry.oaio_id, exc)
            pending = True
            continue
        ctx.repo.journal_remove(entry.id)
        log.info("deleted client root object %s (merged into %s)", entry.oaio_id, current.oaio_id)
        ctx.repo.add_history(entry.oaio_id, "drop-root", detail=f"merged into {current.oaio_id}")
    return pending
