"""The oaio object model, wire-compatible with ``ae-oaio-model`` 0.3.13, and validation of untrusted input.

Everything a peer sends (hub requests, server answers, values of shared objects) passes through one of the
``validate_*`` functions here before anything acts on it; each raises :class:`~oaiod.errors.ValidationError`
naming the field and the reason. The helpers that build ids, stamps and context headers produce exactly what
the published client produces for the same inputs, so objects made by either side are usable by the other.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from oaiod import jsoncodec
from oaiod.errors import ValidationError

# -- access rights: C create (and delete, update), D delete (and update), U update, r read, x none -------------
CREATE_ACCESS_RIGHT = "C"
DELETE_ACCESS_RIGHT = "D"
UPDATE_ACCESS_RIGHT = "U"
READ_ACCESS_RIGHT = "r"
NO_ACCESS_RIGHT = "x"
ACCESS_RIGHTS = (CREATE_ACCESS_RIGHT, DELETE_ACCESS_RIGHT, READ_ACCESS_RIGHT, UPDATE_ACCESS_RIGHT)
#: rights from weakest to strongest; a right grants everything to its left
RIGHTS_ORDER = (NO_ACCESS_RIGHT, READ_ACCESS_RIGHT, UPDATE_ACCESS_RIGHT, DELETE_ACCESS_RIGHT, CREATE_ACCESS_RIGHT)

# -- reserved value keys and client layout ----------------------------------------------------------------------
NAME_VALUES_KEY = "_name"
ROOT_VALUES_KEY = "_root_path"
FILES_VALUES_KEY = "_file_paths"
OBJECTS_DIR = "objz"
FILES_DIR = "filez"

# -- transport --------------------------------------------------------------------------------------------------
HTTP_HEADER_USR_ID = "X-OAIO-user"
HTTP_HEADER_DVC_ID = "X-OAIO-dvc"
HTTP_HEADER_APP_ID = "X-OAIO-app"

# -- stamps -----------------------------------------------------------------------------------------------------
STAMP_FORMAT = "%Y%m%d%H%M%S%f"
STAMP_LENGTH = 20
OLDEST_SYNC_STAMP = "20221231111111012345"
MAX_STAMP_DIFF = 69.0

# -- limits on untrusted input -------------------------------------------------------------------------------------
MAX_ID_BYTES = 255  # an oaio id is a folder name on every client and storage host
MAX_NAME_CHARS = 150  # user, device and app ids (Django's username limit)
MAX_PATH_BYTES = 4096
MAX_PATH_COMPONENT_BYTES = 255
MAX_FILE_PATHS = 250_000  # a 100,000-file folder fits with room; each path costs the hub ~0.5 KB to check
MAX_VALUES_BYTES = 64 * 1024 * 1024

#: the keys of an object's JSON, exactly; the published client builds ``OaiObject(**d)`` so an extra key breaks it
OBJECT_KEYS = (
    "oaio_id",
    "client_stamp",
    "server_stamp",
    "client_values",
    "server_values",
    "csh_id",
    "username",
    "device_id",
    "app_id",
    "csh_access_right",
)


@dataclass
class OaiObject:
    """One oaio object: the newest version (``client_*``) and the one before it (``server_*``)."""

    oaio_id: str
    client_stamp: str = ""
    server_stamp: str = ""
    client_values: dict[str, Any] = field(default_factory=dict)
    server_values: dict[str, Any] = field(default_factory=dict)
    csh_id: str | None = None
    username: str = ""
    device_id: str = ""
    app_id: str = ""
    csh_access_right: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The wire form: exactly :data:`OBJECT_KEYS`.

        Shallow: the values dicts are shared with this object, not copied (a folder's manifest can hold 100k
        entries, and every caller only serialises the answer); copy them before mutating.
        """
        return {name: getattr(self, name) for name in OBJECT_KEYS}

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "object") -> OaiObject:
        """Build from untrusted wire data, validating every field (see :func:`validate_object_dict`)."""
        return validate_object_dict(data, what=what)


# -- stamps -------------------------------------------------------------------------------------------------------


def now_stamp() -> str:
    """The current UTC time as a stamp (``%Y%m%d%H%M%S%f``, 20 digits)."""
    return _dt.datetime.now(_dt.UTC).strftime(STAMP_FORMAT)


def stamp_to_datetime(stamp: str) -> _dt.datetime:
    """The UTC datetime of a stamp; raises ValueError for a malformed one."""
    return _dt.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=_dt.UTC)


def stamp_add(stamp: str, seconds: float) -> str:
    """``stamp`` moved by ``seconds`` (date arithmetic: the digits of a stamp do not carry like a number's)."""
    return (stamp_to_datetime(stamp) + _dt.timedelta(seconds=seconds)).strftime(STAMP_FORMAT)


def stamp_diff(stamp1: str, stamp2: str) -> float:
    """Seconds from ``stamp1`` to ``stamp2`` (positive when ``stamp1`` is older)."""
    return (stamp_to_datetime(stamp2) - stamp_to_datetime(stamp1)).total_seconds()


def validate_stamp(value: Any, fld: str = "stamp", *, allow_empty: bool = False) -> str:
    """A stamp newer than :data:`OLDEST_SYNC_STAMP`, or ``""`` where ``allow_empty``."""
    if value == "" and allow_empty:
        return ""
    if not isinstance(value, str):
        raise ValidationError(fld, f"must be a string, not {type(value).__name__}")
    if len(value) != STAMP_LENGTH or not value.isascii() or not value.isdigit():
        raise ValidationError(fld, f"must be {STAMP_LENGTH} digits (UTC %Y%m%d%H%M%S%f), got {value[:40]!r}")
    try:
        stamp_to_datetime(value)
    except ValueError:
        raise ValidationError(fld, f"is not a valid date and time: {value!r}") from None
    if value <= OLDEST_SYNC_STAMP:
        raise ValidationError(fld, f"must be newer than {OLDEST_SYNC_STAMP}")
    return value


# -- defuse: the published client's mapping of special characters to look-alike Unicode characters ------------

URI_SEP_STR = "://"
URI_SEP_UNICODE_CHAR = "⫻"  # U+2AFB TRIPLE SOLIDUS BINARY RELATION
ASCII_UNICODE: tuple[tuple[str, str], ...] = (
    ("/", "⁄"),  # U+2044
    ("|", "।"),  # U+0964
    ("\\", "﹨"),  # U+FE68
    (":", "﹕"),  # U+FE55
    ("*", "﹡"),  # U+FE61
    ("?", "﹖"),  # U+FE56
    ('"', "＂"),  # U+FF02
    ("'", "‘"),  # U+2018
    ("<", "⟨"),  # U+27E8
    (">", "⟩"),  # U+27E9
    ("(", "⟮"),  # U+27EE
    (")", "⟯"),  # U+27EF
    ("[", "⟦"),  # U+27E6
    ("]", "⟧"),  # U+27E7
    ("{", "﹛"),  # U+FE5B
    ("}", "﹜"),  # U+FE5C
    ("#", "﹟"),  # U+FE5F
    (";", "﹔"),  # U+FE54
    ("@", "﹫"),  # U+FE6B
    ("&", "﹠"),  # U+FE60
    ("=", "﹦"),  # U+FE66
    ("+", "﹢"),  # U+FE62
    ("$", "﹩"),  # U+FE69
    ("%", "﹪"),  # U+FE6A
    ("^", "＾"),  # U+FF3E
    (",", "﹐"),  # U+FE50
    (" ", "␣"),  # U+2423
    (chr(127), "␡"),  # U+2421
    *((chr(code), chr(0x2400 + code)) for code in range(32)),
)
_ASCII_TO_UNICODE = str.maketrans(dict(ASCII_UNICODE))
_UNICODE_TO_ASCII = str.maketrans({uni: asc for asc, uni in (*ASCII_UNICODE, (URI_SEP_STR, URI_SEP_UNICODE_CHAR))})


def defuse(value: str) -> str:
    """Replace ``://`` and characters unsafe in file names and URLs with look-alikes (``ae.base.defuse``)."""
    return value.replace(URI_SEP_STR, URI_SEP_UNICODE_CHAR).translate(_ASCII_TO_UNICODE)


def dedefuse(value: str) -> str:
    """Undo :func:`defuse`."""
    return value.translate(_UNICODE_TO_ASCII)


def object_id(user_name: str, device_id: str, app_id: str, stamp: str, values: Mapping[str, Any]) -> str:
    """The id the published client gives an object registered with these arguments.

    ``app://user@device[/name | /root | /single-file]/stamp``, defused.
    """
    if not (user_name and device_id and app_id and stamp):
        raise ValidationError("oaio_id", "user, device, app and stamp are all needed to make an id")
    url = f"{app_id}://{user_name}@{device_id}"
    if NAME_VALUES_KEY in values:
        url += "/" + values[NAME_VALUES_KEY]
    elif ROOT_VALUES_KEY in values:
        url += "/" + values[ROOT_VALUES_KEY].strip("/")
    elif len(values.get(FILES_VALUES_KEY, [])) == 1:
        url += "/" + values[FILES_VALUES_KEY][0]
    return defuse(url + "/" + stamp)


def split_name(name: str) -> tuple[str, str]:
    """``(stem, extension)`` of a file name; a dotfile such as ``.bashrc`` has no extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, dot + ext


def fitted_name(name: str, addition: str, *, extension: bool = True, limit: int = MAX_PATH_COMPONENT_BYTES) -> str:
    """``STEM<addition>.EXT`` within ``limit`` bytes of UTF-8 (a file system's name limit): the stem is shortened by
    whole characters, the extension kept. Names oaiod makes from a user's (conflicted copies, trash, folders of
    shared objects) must fit, or making them fails with ENAMETOOLONG; an extension too long to keep is shortened as
    part of the stem, and a folder (``extension`` False) has none."""
    stem, ext = split_name(name) if extension else (name, "")
    if len((addition + ext).encode()) > limit // 2:
        stem, ext = name, ""
    room = limit - len((addition + ext).encode())
    encoded = stem.encode()
    if len(encoded) > room:
        stem = encoded[: max(room, 1)].decode(errors="ignore").rstrip() or "_"
    return f"{stem}{addition}{ext}"


def id_names_user(oaio_id: str, username: str) -> bool:
    """True when ``oaio_id`` is minted for ``username``: its first defused ``://`` is followed by the defused name
    and a defused ``@`` (see :func:`object_id`).

    A name holding ``@`` makes this ambiguous (``alice@x`` and ``alice`` both match ``app⫻alice﹫x﹫dev…``), so it
    only ever narrows who may claim an id; the hub also refuses an id under which another user holds data.
    """
    _app, sep, rest = oaio_id.partition(URI_SEP_UNICODE_CHAR)
    return bool(sep) and bool(username) and rest.startswith(defuse(username) + defuse("@"))


# -- context headers ------------------------------------------------------------------------------------------


def context_encode(user_name: str, device_id: str, app_id: str = "") -> dict[str, str]:
    """The three context headers: each value the ``repr()`` of the id's UTF-8 bytes, e.g. ``b'alice'``."""
    return {
        HTTP_HEADER_USR_ID: repr(user_name.encode()),
        HTTP_HEADER_DVC_ID: repr(device_id.encode()),
        HTTP_HEADER_APP_ID: repr(app_id.encode()),
    }


_BYTES_LITERAL = re.compile(r"""\Ab(?:'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*")\Z""", re.S)


def decode_context_value(value: Any, fld: str) -> str:
    """Decode one context header value (a Python bytes literal of UTF-8); anything else is refused."""
    if not isinstance(value, str) or len(value) > 4 * MAX_NAME_CHARS * 4 or not _BYTES_LITERAL.match(value):
        raise ValidationError(fld, "must be a Python bytes literal such as b'alice'")
    try:
        raw = ast.literal_eval(value)
        text = raw.decode("utf-8")
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError):
        raise ValidationError(fld, "is not a valid UTF-8 bytes literal") from None
    if not isinstance(raw, bytes):  # pragma: no cover - the regex admits bytes literals only
        raise ValidationError(fld, "must be a bytes literal")
    return validate_name(text, fld, allow_empty=True)


def context_decode(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """``(user, device, app)`` from request headers; a missing header decodes as ``""``."""
    return tuple(  # type: ignore[return-value]
        decode_context_value(headers.get(name, "b''"), name)
        for name in (HTTP_HEADER_USR_ID, HTTP_HEADER_DVC_ID, HTTP_HEADER_APP_ID)
    )


# -- access rights ------------------------------------------------------------------------------------------------


def validate_access_right(value: Any, fld: str = "access_right", *, allow_none: bool = True) -> str:
    """One of ``C D U r`` (and ``x`` where ``allow_none``)."""
    allowed = (*ACCESS_RIGHTS, NO_ACCESS_RIGHT) if allow_none else ACCESS_RIGHTS
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(fld, f"must be one of {', '.join(allowed)}, got {str(value)[:20]!r}")
    return value


def right_grants(held: str, needed: str) -> bool:
    """True when holding ``held`` allows what ``needed`` allows (``C`` ⊇ ``D`` ⊇ ``U`` ⊇ ``r`` ⊇ ``x``)."""
    order = {right: rank for rank, right in enumerate(RIGHTS_ORDER)}
    return order.get(held, 0) >= order[needed]


# -- names, ids, paths -------------------------------------------------------------------------------------------

_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unsafe_char(text: str) -> str | None:
    """The first control, line/paragraph separator or bidi override character in ``text``, if any."""
    if text.isprintable():  # exact: every refused character is in a category isprintable() rejects
        return None
    if text.isascii():  # the common case, and 10x cheaper than asking unicodedata per character
        match = _ASCII_CONTROL.search(text)
        return match.group() if match else None
    for char in text:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
            return char
    return None


def validate_name(value: Any, fld: str, *, allow_empty: bool = False, max_chars: int = MAX_NAME_CHARS) -> str:
    """A user, device or app id: a short string without control characters."""
    if not isinstance(value, str):
        raise ValidationError(fld, f"must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(fld, "must not be empty")
    if len(value) > max_chars:
        raise ValidationError(fld, f"is longer than {max_chars} characters")
    if (bad := _unsafe_char(value)) is not None:
        raise ValidationError(fld, f"contains the control character U+{ord(bad):04X}")
    return value


_USERNAME = re.compile(r"\A[\w.@+-]+\Z")


def validate_username(value: Any, fld: str = "username") -> str:
    """A user name as the oaio server (Django) accepts it: letters, digits and ``@ . + - _``."""
    name = validate_name(value, fld)
    if not _USERNAME.match(name):
        raise ValidationError(fld, "may hold only letters, digits and @ . + - _")
    return name


def validate_oaio_id(value: Any, fld: str = "oaio_id") -> str:
    """An object id: defused (no ``/``, ``\\``, ``:`` … nor control characters), usable as one folder name."""
    oaio_id = validate_name(value, fld, max_chars=MAX_ID_BYTES)
    if defuse(oaio_id) != oaio_id:
        bad = sorted({c for c in oaio_id if defuse(c) != c} | ({"://"} if URI_SEP_STR in oaio_id else set()))
        raise ValidationError(fld, f"contains characters an id may not hold: {''.join(bad)!r}")
    if oaio_id in (".", "..") or oaio_id.strip() != oaio_id:
        raise ValidationError(fld, f"{oaio_id!r} is not usable as a folder name")
    if len(oaio_id.encode()) > MAX_ID_BYTES:
        raise ValidationError(fld, f"is longer than {MAX_ID_BYTES} bytes in UTF-8")
    return oaio_id


_DRIVE = re.compile(r"\A[A-Za-z]:")
#: a path :func:`validate_file_path` accepts, in the common form: printable ASCII, components of 1-255 characters
#: but neither ``.`` nor ``..``, no backslash, no drive; any other path takes the full checks (and their messages).
#: ``_PLAIN_PATH_LINES`` matches such paths one per line (a component ends at ``/``, a line break or the end).
_PLAIN_COMPONENT = rf"(?!\.\.?(?:[/\n]|\Z))[\x20-\x2e\x30-\x5b\x5d-\x7e]{{1,{MAX_PATH_COMPONENT_BYTES}}}"
_PLAIN_PATH_PATTERN = rf"(?![A-Za-z]:){_PLAIN_COMPONENT}(?:/{_PLAIN_COMPONENT})*"
_PLAIN_PATH = re.compile(_PLAIN_PATH_PATTERN)
_PLAIN_PATH_LINES = re.compile(rf"{_PLAIN_PATH_PATTERN}(?:\n{_PLAIN_PATH_PATTERN})*")
#: the same form with any character but ``/``, ``\`` and a line break, for paths that :meth:`str.isprintable` passes
#: (no control, separator or bidi character) and that are short enough in UTF-8 for no component to be too long
_PRINTABLE_COMPONENT = r"(?!\.\.?(?:[/\n]|\Z))[^/\\\n]+"
_PRINTABLE_PATH_PATTERN = rf"(?![A-Za-z]:){_PRINTABLE_COMPONENT}(?:/{_PRINTABLE_COMPONENT})*"
_PRINTABLE_PATH = re.compile(_PRINTABLE_PATH_PATTERN)
_PRINTABLE_PATH_LINES = re.compile(rf"{_PRINTABLE_PATH_PATTERN}(?:\n{_PRINTABLE_PATH_PATTERN})*")
#: characters a short path may have so that no component can exceed MAX_PATH_COMPONENT_BYTES (4 bytes per character)
_SHORT_PRINTABLE = MAX_PATH_COMPONENT_BYTES // 4


def _is_plain_path(value: Any) -> TypeGuard[str]:
    """True for a path of the common form (see :data:`_PLAIN_PATH`, and :data:`_PRINTABLE_PATH` for names beyond
    ASCII): then every check would pass (~5x faster)."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return len(value) <= MAX_PATH_BYTES and _PLAIN_PATH.fullmatch(value) is not None
    return (
        value.isprintable()
        and len(value.encode()) <= MAX_PATH_COMPONENT_BYTES
        and _PRINTABLE_PATH.fullmatch(value) is not None
    )


def _all_plain_and_distinct(paths: list[Any]) -> bool:
    """True when every entry is a plain path (:func:`_is_plain_path`) and none repeats: one regex over them all,
    ~3x faster than one call per path."""
    try:
        text = "\n".join(paths)
    except TypeError:  # an entry that is not a string
        return False
    if text.count("\n") != len(paths) - 1:  # an entry holds a line break: the lines are not the entries
        return False
    if text.isascii():
        plain = max(map(len, paths)) <= MAX_PATH_BYTES and _PLAIN_PATH_LINES.fullmatch(text) is not None
    else:
        plain = (
            max(map(len, paths)) <= _SHORT_PRINTABLE
            and all(map(str.isprintable, paths))
            and _PRINTABLE_PATH_LINES.fullmatch(text) is not None
        )
    return plain and len(set(paths)) == len(paths)


def validate_file_path(value: Any, fld: str = FILES_VALUES_KEY) -> str:
    """A path of an attached file: relative, ``/``-separated, normalized, safe to join under a root folder.

    Refused: absolute and drive paths, empty, ``.`` and ``..`` components, backslashes, control characters,
    a trailing ``/``, over-long components or paths.
    """
    if _is_plain_path(value):
        return value
    return _check_file_path(value, fld)


def _check_file_path(value: Any, fld: str) -> str:
    """Every check of :func:`validate_file_path`, one by one, each with its own message."""
    if not isinstance(value, str):
        raise ValidationError(fld, f"a path must be a string, not {type(value).__name__}")
    shown = repr(value[:80])
    if not value:
        raise ValidationError(fld, "a path must not be empty")
    if (bad := _unsafe_char(value)) is not None:
        raise ValidationError(fld, f"path {shown} contains the control character U+{ord(bad):04X}")
    if "\\" in value:
        raise ValidationError(fld, f"path {shown} contains a backslash; separate folders with /")
    if value.startswith("/") or _DRIVE.match(value):
        raise ValidationError(fld, f"path {shown} must be relative")
    if len(value.encode()) > MAX_PATH_BYTES:
        raise ValidationError(fld, f"path {shown}… is longer than {MAX_PATH_BYTES} bytes")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise ValidationError(fld, f"path {shown} is not normalized (empty, . or .. component)")
        if len(part.encode()) > MAX_PATH_COMPONENT_BYTES:
            raise ValidationError(fld, f"path {shown} has a name longer than {MAX_PATH_COMPONENT_BYTES} bytes")
    return value


_PLACEHOLDER = re.compile(r"\A\{([A-Za-z_][A-Za-z0-9_]*)\}")


def split_root_path(root_path: str) -> tuple[str | None, str]:
    """``("usr", "/oaio_root/x")`` for ``"{usr}/oaio_root/x"``; ``(None, path)`` without a placeholder."""
    match = _PLACEHOLDER.match(root_path)
    if match is None:
        return None, root_path
    return match.group(1), root_path[match.end() :]


def validate_root_path(value: Any, fld: str = ROOT_VALUES_KEY) -> str:
    """A ``_root_path``: a string, at most one leading ``{placeholder}``, no control characters.

    It is only checked for form here: where it may be written to on this device is the daemon's decision.
    """
    if not isinstance(value, str):
        raise ValidationError(fld, f"must be a string, not {type(value).__name__}")
    if not value:
        raise ValidationError(fld, "must not be empty")
    if len(value.encode()) > MAX_PATH_BYTES:
        raise ValidationError(fld, f"is longer than {MAX_PATH_BYTES} bytes")
    if (bad := _unsafe_char(value)) is not None:
        raise ValidationError(fld, f"contains the control character U+{ord(bad):04X}")
    _placeholder, rest = split_root_path(value)
    if "{" in rest or "}" in rest:
        raise ValidationError(fld, "may hold one {placeholder}, and only at its start")
    return value


def validate_file_paths(value: Any, fld: str = FILES_VALUES_KEY) -> list[str]:
    """A list of distinct, safe attached-file paths."""
    if not isinstance(value, list):
        raise ValidationError(fld, f"must be a list of paths, not {type(value).__name__}")
    if len(value) > MAX_FILE_PATHS:
        raise ValidationError(fld, f"lists more than {MAX_FILE_PATHS} files")
    if value and _all_plain_and_distinct(value):
        return value
    seen: set[str] = set()  # one by one, for the first bad entry's message
    for path in value:
        if not _is_plain_path(path):
            _check_file_path(path, fld)
        if path in seen:
            raise ValidationError(fld, f"lists {path[:80]!r} twice")
        seen.add(path)
    return value


def validate_json_object(value: Any, fld: str, *, max_bytes: int = MAX_VALUES_BYTES) -> dict[str, Any]:
    """A JSON object of plain JSON (no NaN/Infinity) whose ``json.dumps()`` is at most ``max_bytes`` in UTF-8.

    The size is measured with :func:`oaiod.jsoncodec.dumps` (compact): ``json.dumps``' default form adds one space
    per ``,`` and ``:`` and writes no float more than 1.25x longer, so it is at most twice as long; only a value
    near the limit by that bound is measured again the old (slow) way, and the accepted set is the same.
    """
    if not isinstance(value, dict):
        raise ValidationError(fld, f"must be a JSON object, not {type(value).__name__}")
    try:
        size = len(jsoncodec.dumps(value))
    except (TypeError, ValueError, RecursionError):
        size = -1  # the measure below raises the very error it always did
    if size < 0 or 2 * size > max_bytes:
        try:
            size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValidationError(fld, f"is not plain JSON: {exc}") from None
    if size > max_bytes:
        raise ValidationError(fld, f"is {size} bytes, more than the limit of {max_bytes}")
    return value


def validate_values(value: Any, fld: str = "client_values", *, max_bytes: int = MAX_VALUES_BYTES) -> dict[str, Any]:
    """An object's values: a JSON object within ``max_bytes`` (:func:`validate_json_object`); reserved keys of
    the right form.

    Any other key is user data and passes untouched.
    """
    values = validate_json_object(value, fld, max_bytes=max_bytes)
    if NAME_VALUES_KEY in values:
        validate_name(values[NAME_VALUES_KEY], f"{fld}.{NAME_VALUES_KEY}", max_chars=MAX_ID_BYTES)
    if ROOT_VALUES_KEY in values:
        validate_root_path(values[ROOT_VALUES_KEY], f"{fld}.{ROOT_VALUES_KEY}")
    if FILES_VALUES_KEY in values:
        validate_file_paths(values[FILES_VALUES_KEY], f"{fld}.{FILES_VALUES_KEY}")
    return values


def validate_exact_keys(data: Any, keys: Iterable[str], what: str, *, optional: Iterable[str] = ()) -> dict[str, Any]:
    """``data`` is a JSON object holding every one of ``keys`` and nothing else but ``optional`` keys."""
    if not isinstance(data, dict):
        raise ValidationError(what, f"must be a JSON object, not {type(data).__name__}")
    needed, extra_ok = set(keys), set(optional)
    if missing := sorted(needed - data.keys()):
        raise ValidationError(what, f"is missing {', '.join(missing)}")
    if extra := sorted(str(k) for k in data.keys() - needed - extra_ok):
        raise ValidationError(what, f"has unknown keys {', '.join(extra)[:200]}")
    return data


def validate_object_dict(data: Any, *, what: str = "object", server_values_ignored: bool = False) -> OaiObject:
    """An :class:`OaiObject` from untrusted JSON: exactly :data:`OBJECT_KEYS`, each of the right type and form.

    ``server_values_ignored``: the caller neither stores nor returns ``server_values`` (the hub's register and
    upload), so they are only checked to be a JSON object within the size limit, not key by key.
    """
    validate_exact_keys(data, OBJECT_KEYS, what)
    csh_id = data["csh_id"]
    if csh_id is not None:
        validate_name(csh_id, "csh_id", allow_empty=True)
    right = data["csh_access_right"]
    if right != "":
        validate_access_right(right, "csh_access_right")
    return OaiObject(
        oaio_id=validate_oaio_id(data["oaio_id"]),
        client_stamp=validate_stamp(data["client_stamp"], "client_stamp"),
        server_stamp=validate_stamp(data["server_stamp"], "server_stamp", allow_empty=True),
        client_values=validate_values(data["client_values"], "client_values"),
        server_values=(validate_json_object if server_values_ignored else validate_values)(
            data["server_values"], "server_values"
        ),
        csh_id=csh_id,
        username=validate_name(data["username"], "username", allow_empty=True),
        device_id=validate_name(data["device_id"], "device_id", allow_empty=True),
        app_id=validate_name(data["app_id"], "app_id", allow_empty=True),
        csh_access_right=right,
    )


def storage_key(oaio_id: str, client_stamp: str, file_path: str = "") -> str:
    """The storage host key of a version's file: ``<oaio_id>/<client_stamp>/<path>`` (validated parts)."""
    key = f"{validate_oaio_id(oaio_id)}/{validate_stamp(client_stamp, 'client_stamp')}"
    return f"{key}/{validate_file_path(file_path)}" if file_path else key
