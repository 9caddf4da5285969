"""How oaiod's long-running processes (the daemon, ``oaiod hub serve``) keep their memory small and their garbage
collection cheap.

* :func:`use_system_malloc` — once, at start: Python objects in glibc's heap, which can give freed pages back.
* :func:`freeze_startup_objects` — once start-up is done: the objects made by then (modules, the ORM's mappers,
  the web app) are taken out of the garbage collector's view; they live as long as the process anyway.
* :func:`release_free_memory` — after each burst of work (a sync cycle): freed pages back to the OS.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Hand memory that a sync cycle freed back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    glibc keeps the freed pages of every thread's heap for reuse: after the initial sync of 100,000 files they
    were most of an idle daemon's RSS. Trimming after each cycle keeps the idle daemon near its live size; it
    costs well under a millisecond when there is little to give back. See :func:`use_system_malloc` for why
    Python objects should live in glibc's heap at all.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive now to the collector's permanent generation (``gc.freeze``).

    Why: a sync of 10,000 files makes enough objects to trigger full collections, and each one walked every object
    of the process — on the hub about 80 ms, once every one or two uploads of a big folder's values. Start-up
    objects are never garbage, so leaving them out costs nothing and makes a full collection walk only what the
    work made since.
    """
    gc.collect()
    gc.freeze()


def use_system_malloc() -> None:
    """``oaiod run`` and ``oaiod hub serve`` only: re-execute this process (same PID, same arguments) with
    ``PYTHONMALLOC=malloc``, once, on glibc; returns only when it does not (``PYTHONMALLOC`` already set, not glibc,
    not started as the ``oaiod`` program — the command run in-process by a test runner must not replace that — or
    exec failed).

    Why: CPython's small-object allocator keeps a 1 MiB arena mapped while any object in it lives, so after the
    initial sync of 100,000 files an idle daemon held about 230 MB RSS, mostly arenas left nearly empty by the
    sync's temporary objects (trimming cannot help them). With glibc's malloc for every object,
    :func:`release_free_memory` gives those pages back: 124 MB (bench/daemon_idle.py). Set ``PYTHONMALLOC``
    yourself (e.g. ``pymalloc``) to keep another allocator.
    """
    argv = getattr(sys, "orig_argv", None)
    if "PYTHONMALLOC" in os.environ or _MALLOC_TRIM is None or not argv:
        return
    program = Path(sys.argv[0])
    if program.name != "oaiod" and program.resolve().parent not in _PACKAGE_FOLDERS:
        return  # started as another program (a test runner, an embedding), not as oaiod or ``-m oaiod.…``
    try:
        os.execve(sys.executable, argv, {**os.environ, "PYTHONMALLOC": "malloc"})
    except OSError as exc:  # run on with pymalloc: only memory use differs
        print(f"oaiod: could not restart with PYTHONMALLOC=malloc ({exc}); continuing", file=sys.stderr, flush=True)


#: the folders of oaiod's modules: ``python -m oaiod.daemon.cli`` or ``-m oaiod.hub.cli`` count as oaiod
_PACKAGE_FOLDERS = frozenset(Path(__file__).resolve().parent / sub for sub in ("", "daemon", "hub"))
