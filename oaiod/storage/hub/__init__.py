"""The ``Hub`` storage host: :mod:`.backend` (single files, copies, listings, errors translated where they enter)
and :mod:`.batch` (``put_many``/``get_many`` over the hub's batch routes)."""

from oaiod.storage.hub.backend import HubBackend

__all__ = ["HubBackend"]
