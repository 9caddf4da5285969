"""JSON for big values: a folder's values list every file (10,000 files ≈ 1.4 MB), and they are encoded several
times per upload and download, by the daemon and by the hub.

:func:`dumps` gives exactly what ``json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))``
encoded as UTF-8 gives — the same JSON value, accepted and refused alike, the same exception types — built on
``orjson`` (≈6× faster on such values). orjson differs from the stdlib in these ways, each handled here:

- it refuses lone surrogates, integers beyond 64 bits, non-``str`` dict keys, nesting deeper than 254, and
  subclasses of ``str``/``int``/``dict``/``list``, dataclasses and datetimes (passed through on purpose):
  that call runs through the stdlib instead, which succeeds or raises its usual error;
- it writes NaN and ±Infinity as ``null`` where the stdlib (``allow_nan=False``) raises ``ValueError``: when the
  output holds ``null`` at all, the object is searched for a float that is not finite, and the stdlib raises
  for it. So no caller has to trust that no NaN got in (the stdlib parser reads ``1e400`` as Infinity);
- it writes a few floats in another notation (``1e16`` for ``1e+16``, ``0.00001`` for ``1e-05``): the same
  numbers.

Known difference: an ``enum.Enum`` member that is not a ``str``/``int`` subclass and a ``uuid.UUID`` are written by
orjson (as their value, and as a string) where the stdlib raises ``TypeError``. No JSON parser produces them, and
oaiod never puts them in a value.

:func:`loads` stays on the stdlib: orjson 3.8 reads an integer beyond 64 bits as a float, silently, and checking
a text for such integers costs more than orjson saves on values like these (measured: orjson 3.6–7.6 ms,
stdlib 3.4–8.2 ms for 1.4–2.8 MB: manifests are many small containers, whose allocation dominates either way).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def dumps(obj: Any, *, ascii_fallback: bool = False) -> bytes:
    """``obj`` as compact JSON in UTF-8; ``TypeError`` / ``ValueError`` (NaN, Infinity, a circular reference,
    a lone surrogate) / ``RecursionError`` as the stdlib raises them.

    ``ascii_fallback``: a value holding a lone surrogate (which UTF-8 cannot carry) is written with ``\\u``
    escapes for every non-ASCII character instead of raising ``UnicodeEncodeError``.
    """
    try:
        data = orjson.dumps(obj, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _stdlib_dumps(obj, ascii_fallback)
    if b"null" in data and _holds_non_finite(obj):  # orjson wrote it as null
        return _stdlib_dumps(obj, ascii_fallback)  # raises ValueError: Out of range float values are not JSON …
    return data


def dumps_text(obj: Any) -> str:
    """:func:`dumps` as a ``str`` for a database column (a lone surrogate escaped, as SQLAlchemy's default did)."""
    return dumps(obj, ascii_fallback=True).decode("utf-8")


def loads(data: bytes | str) -> Any:
    """Plain JSON from ``data`` (bytes must be UTF-8): ``NaN``/``Infinity`` are refused like any other
    non-JSON text, with ``ValueError``; ``UnicodeDecodeError`` (a ``ValueError`` too) for bytes not in UTF-8.
    """
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    return json.loads(text, parse_constant=_refuse_constant)


def _stdlib_dumps(obj: Any, ascii_fallback: bool) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        if not ascii_fallback:
            raise
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("ascii")


def _holds_non_finite(obj: Any) -> bool:
    """True when ``obj`` (which orjson could write: only exact dicts, lists, tuples, no cycle) holds NaN or ±inf."""
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
