"""The oaiod hub: a self-hostable oaio server (part A of ``docs/hub-api.md``'s spec plus oaiod's part B).

Layout: :mod:`~oaiod.hub.settings` (what an operator sets), :mod:`~oaiod.hub.db` (tables and engine),
:mod:`~oaiod.hub.passwords` (the KDF), :mod:`~oaiod.hub.service` (every business rule, no HTTP),
:mod:`~oaiod.hub.app` (the application and its transport rules), :mod:`~oaiod.hub.deps` (what routes depend
on), :mod:`~oaiod.hub.notifier` (the change feed's waiting room), :mod:`~oaiod.hub.routes` / :mod:`~oaiod.hub.feed`
/ the blob store's routes (the HTTP face),
:mod:`~oaiod.hub.archives` / :mod:`~oaiod.hub.links` (folder zips and share links, over
:mod:`~oaiod.hub.versionfiles`; routes in :mod:`~oaiod.hub.shareroutes`),
:mod:`~oaiod.hub.server` (uvicorn in a thread, embeddable) and :mod:`~oaiod.hub.cli` (``oaiod hub …``).
"""

from __future__ import annotations
