"""oaiod.jsoncodec: orjson's speed with the stdlib's answers (what json.dumps accepts, refuses and means)."""

from __future__ import annotations

import datetime
import json
import math
import random
import struct
from typing import Any

import pytest

from oaiod import jsoncodec
from oaiod.errors import ValidationError
from oaiod.model import validate_json_object, validate_values
from tests.hub.objects import new_object, next_version


def stdlib(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class Text(str):
    pass


class Number(int):
    pass


PLAIN = [
    {},
    [],
    {"a": [1, -2, 2**63 - 1, -(2**63), 2**64 - 1, 0.5, -0.0, 1e-300, True, False, None, "x"]},
    {"_file_paths": ["d/f.dat", "日本/語.txt", "a b"], "_oaiod": {"files": {"d/f.dat": [4096, 10**18, "ab", False]}}},
    {"s": '\x00\x1f\x7f\u2028\u2029\ufeff"\\/\U0001f600é'},
    {"null": "null", "n": [None, "null", {"null": None}]},
    (1, 2, [3, (4,)]),
    "text",
    0,
]


@pytest.mark.parametrize("obj", PLAIN, ids=range(len(PLAIN)))
def test_same_bytes_as_stdlib_for_plain_json(obj: Any) -> None:
    assert jsoncodec.dumps(obj) == stdlib(obj)
    assert jsoncodec.dumps_text(obj) == stdlib(obj).decode()


FALLBACK = [
    {"big": 2**64, "neg": -(2**63) - 1, "huge": 10**40},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    {Text("k"): Text("v"), "n": Number(5)},
    {"deep": json.loads("[" * 500 + "]" * 500)},
]


@pytest.mark.parametrize("obj", FALLBACK, ids=["big ints", "non-str keys", "subclasses", "deep"])
def test_what_orjson_refuses_goes_through_the_stdlib(obj: Any) -> None:
    assert jsoncodec.dumps(obj) == stdlib(obj)


@pytest.mark.parametrize(
    "obj",
    [math.nan, [math.inf], {"a": {"b": [1, -math.inf]}}, {"null": "null", "x": math.nan}, (math.nan,)],
    ids=["nan", "inf in list", "deep -inf", "next to a null string", "tuple"],
)
def test_non_finite_floats_raise_like_the_stdlib(obj: Any) -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        jsoncodec.dumps(obj)
    with pytest.raises(ValidationError, match="is not plain JSON: Out of range"):
        validate_values({"v": obj})


def test_unserialisable_and_circular_raise_like_the_stdlib() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps({"when": datetime.date(2024, 1, 1)})
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps({"raw": b"bytes"})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsoncodec.dumps(loop)


def test_lone_surrogates() -> None:
    value = {"name": "a\ud800b", "é": 1}
    with pytest.raises(UnicodeEncodeError):
        jsoncodec.dumps(value)
    escaped = jsoncodec.dumps(value, ascii_fallback=True)
    assert escaped == json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    assert json.loads(escaped) == value
    assert json.loads(jsoncodec.dumps_text(value)) == value


def test_floats_mean_the_same_numbers() -> None:
    rng = random.Random(7)
    floats = [10.0**k for k in range(-320, 308)] + [5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 100.0, -0.0]
    floats += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(20_000)]
    floats = [f for f in floats if math.isfinite(f)]
    decoded = json.loads(jsoncodec.dumps(floats))
    assert [struct.pack("d", f) for f in decoded] == [struct.pack("d", f) for f in floats]
    for number in floats:  # the size measure of validate_json_object relies on this bound
        assert len(json.dumps(number)) <= 1.25 * len(jsoncodec.dumps(number)), number


def test_loads_refuses_constants_and_keeps_big_ints() -> None:
    assert jsoncodec.loads(b'{"a":[18446744073709551616,-9223372036854775809,1e400]}') == {
        "a": [18446744073709551616, -9223372036854775809, math.inf]
    }
    assert jsoncodec.loads('"\\ud800"') == "\ud800"
    for text in (b"NaN", b"[Infinity]", b'{"a":-Infinity}'):
        with pytest.raises(ValueError, match="is not JSON"):
            jsoncodec.loads(text)
    with pytest.raises(UnicodeDecodeError):
        jsoncodec.loads(b'"\xff"')
    with pytest.raises(ValueError):
        jsoncodec.loads(b"{")


def test_value_size_limit_is_measured_as_before() -> None:
    """The limit is on ``json.dumps(value)`` (spaced) in UTF-8: the compact measure must not move it."""
    value = {"k": ["é" * 10, 1e16, 1e-05, [1, 2, {"x": None}]], "m": "x" * 300}
    size = len(json.dumps(value, ensure_ascii=False).encode())
    assert validate_json_object(value, "v", max_bytes=size) is value
    with pytest.raises(ValidationError, match=f"is {size} bytes, more than the limit of {size - 1}"):
        validate_json_object(value, "v", max_bytes=size - 1)
    small = {"k": list(range(100))}
    small_size = len(json.dumps(small).encode())
    assert small_size > len(jsoncodec.dumps(small))
    with pytest.raises(ValidationError, match=f"is {small_size} bytes"):
        validate_json_object(small, "v", max_bytes=small_size - 1)


def test_validate_values_errors_unchanged() -> None:
    with pytest.raises(ValidationError, match="must be a JSON object, not list"):
        validate_values([])
    with pytest.raises(ValidationError, match=r"is not plain JSON: .*surrogates not allowed"):
        validate_values({"a": "\udc80"})
    with pytest.raises(ValidationError, match="is not plain JSON: Object of type set"):
        validate_values({"a": {1}})
    assert validate_values({"big": 2**70}) == {"big": 2**70}


# -- through a real hub (SQLite): request decoding, validation, the database's JSON columns, the answers --------


def _register(session: Any, **values: Any) -> dict[str, Any]:
    answer = session.post("register/", json=new_object(session.username, **values))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_hub_keeps_values_exactly(hub: Any, hub_session: Any) -> None:
    values = {
        "big": [2**70, -(2**63) - 1, 2**64 - 1],
        "floats": [1e16, 1e-05, 0.1, -0.0],
        "text": "日本 \x00 \u2028 null",
        "nothing": None,
        "_file_paths": ["d/é.txt", "a b/c"],
    }
    alice = hub_session(hub, "alice")
    stored = _register(alice, **values)
    listed = alice.get("oaio_stampz/").json()[0]["client_values"]
    for answer in (stored["client_values"], listed):
        assert answer == {"_name": "note", **values}
        assert all(type(number) is int for number in answer["big"])


def test_hub_refuses_non_finite_numbers(hub: Any, hub_session: Any) -> None:
    alice = hub_session(hub, "alice")
    body = json.dumps(new_object("alice")).replace('"client_values": {', '"client_values": {"x": NaN, ')
    refused = alice.post("register/", data=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"] == "bad_request", refused.text
    overflow = body.replace("NaN", "1e400")  # the stdlib parser reads Infinity: the value check refuses it
    refused = alice.post("register/", data=overflow, headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and refused.json()["field"] == "client_values", refused.text
    assert alice.get("oaio_stampz/").json() == []


def test_hub_checks_ignored_server_values_only_for_form(hub: Any, hub_session: Any) -> None:
    """register/ and upload/ never read a request's server_values: a JSON object within the limit is enough."""
    alice = hub_session(hub, "alice")
    stored = _register(alice, text="one")
    update = {**next_version(stored, text="two"), "server_values": {"_file_paths": ["../x"], "_name": 5}}
    uploaded = alice.post("upload/", json=update)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["server_values"] == stored["client_values"]
    for bad in ([], "x", None):
        refused = alice.post("upload/", json={**next_version(uploaded.json(), text="3"), "server_values": bad})
        assert refused.status_code == 400 and refused.json()["field"] == "server_values", refused.text
    refused = alice.post("upload/", json={**next_version(uploaded.json(), text="4"), "client_values": {"_name": 5}})
    assert refused.status_code == 400 and refused.json()["field"] == "client_values._name", refused.text
