"""Value clashes: a key of an object's values changed differently here and on the server (design §5).

The merge itself is pure (:func:`oaiod.engine.plan.merge_values`); the side that loses its value is recorded here,
the same way whichever step found the clash: a pull keeps the server's value (that version was committed first),
a push keeps this device's (its version is the newer) and overwrites one the server had. Either way the value that
is dropped is a ``value`` conflict (``ctl conflicts``, both values in its detail) and a warning, never silence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from oaiod.engine.context import EngineContext

log = logging.getLogger("oaiod.engine")


def record_clashes(
    ctx: EngineContext,
    oaio_id: str,
    keys: Iterable[str],
    local: Mapping[str, Any],
    remote: Mapping[str, Any],
    *,
    kept_local: bool,
) -> None:
    """Record each of ``keys`` that changed differently in ``local`` (this device's values) and ``remote`` (the
    server's); ``kept_local`` says which value the merge kept."""
    for key in keys:
        mine, theirs = _shown(local, key), _shown(remote, key)
        if kept_local:
            log.warning("%s: value %r changed on both sides; kept this device's %s, the server had %s",
                        oaio_id, key, mine, theirs)  # fmt: skip
            detail = f"changed on both sides; kept this device's value {mine}, the server had {theirs}"
        else:
            log.warning("%s: value %r changed on both sides; kept the server's %s, this device had %s",
                        oaio_id, key, theirs, mine)  # fmt: skip
            detail = f"changed on both sides; kept the server's value {theirs}, this device had {mine}"
        ctx.repo.add_conflict(oaio_id, "value", key, detail=detail)


def _shown(values: Mapping[str, Any], key: str) -> str:
    """``values[key]`` as JSON for a conflict's detail (at most 500 characters), or "deleted"."""
    text = json.dumps(values[key], ensure_ascii=False, sort_keys=True) if key in values else "deleted"
    return text if len(text) <= 500 else text[:499] + "…"
