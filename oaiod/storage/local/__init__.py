"""The ``Local`` storage host: :mod:`.backend` (the folder, its guarantees), :mod:`.pool` (worker processes for
big batches) and :mod:`.worker` (the per-item system calls, standard library only, run in a worker or in-process)."""

from oaiod.storage.local.backend import LocalBackend

__all__ = ["LocalBackend"]
