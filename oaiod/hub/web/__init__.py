"""The hub's web app: server-rendered pages under :data:`PREFIX` (``/web/``), same origin, session and rights as
the API (``docs/hub-api.md``, *Web app*).

Contract for page modules (this package's routers, and those that later join it):

- A page module makes an ``APIRouter`` of its own and adds it to :mod:`oaiod.hub.web.pages` (one line), which
  :func:`mount` includes under :data:`PREFIX`. Its handlers take ``WebActorDep`` (the logged-in user; anonymous →
  the login page) and answer ``render(request, "name.html", **context)``; both, with ``FormDep``, ``redirect``,
  ``flash`` and ``url``, are in :mod:`oaiod.hub.web.render`.
- Templates extend ``base.html`` and fill the blocks ``title`` and ``content``; ``base.html`` draws the
  navigation and the flash messages (``flash(response, text)`` or ``redirect(path, text)``: shown once, on the
  next page).
  Every template sees ``user`` (the :class:`~oaiod.hub.service.Actor` or ``None``), ``csrf_token`` (put it in
  every form as ``<input type="hidden" name="csrf_token" value="{{ csrf_token }}">``), ``prefix`` and
  ``static(name)``.
- A changing action is a ``POST`` form; :func:`oaiod.hub.web.render.form_data` reads it and checks its
  ``csrf_token`` against the ``csrftoken`` cookie (the API's double-submit rule, with a form field for the
  header). Then it answers with a redirect (303) to a page, which shows the flash message.
- Rights are the hub service's: pages call :class:`~oaiod.hub.service.HubService` methods and never check a
  right themselves (supervisor pages depend on ``SupervisorDep`` of :mod:`oaiod.hub.web.admin`). A
  :class:`~oaiod.hub.errors.HubError` raised under :data:`PREFIX` becomes an HTML error page with the same status
  (401 → the login page); elsewhere it stays JSON.
- Every answer under :data:`PREFIX` carries :data:`~oaiod.hub.web.render.SECURITY_HEADERS` (a strict
  Content-Security-Policy: no inline script or style, nothing from another origin). Static files are served
  from ``static/`` at ``{PREFIX}static/``; the only script is ``static/web.js`` (progressive enhancement).
- Places left for other page modules: the folder page (``object.html``) includes ``object_archive.html`` (the
  "Download as zip" control of the folder shown) and ``object_links.html`` (the object's "Links" section) when
  those templates exist; they see ``summary`` (:class:`~oaiod.hub.catalog.ObjectSummary`), ``path``, ``stamp``,
  ``newest``, ``csrf_token`` and the page helpers (``url``, ``object_url``, ``when``, ``human_size``).
- Reads and rights of objects, trees and versions: :class:`oaiod.hub.catalog.Catalog` (``catalog(request)`` in
  :mod:`oaiod.hub.web.objects`); a file's bytes: :func:`oaiod.hub.blobs.blob_download` (``Range`` honoured).
- The Jinja2 environment autoescapes every template: a file named ``<img src=x onerror=…>`` shows as text.
  Never mark a user-written string ``|safe``.
"""

from __future__ import annotations

from oaiod.hub.web.render import PREFIX, mount

__all__ = ["PREFIX", "mount"]
