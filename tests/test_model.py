"""oaiod.model against the published ae-oaio-model / ae.base, and its input validation."""

from __future__ import annotations

import pytest

from oaiod import model
from oaiod.errors import ValidationError

ae_base = pytest.importorskip("ae.base")
ae_model = pytest.importorskip("ae.oaio_model")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"_name": "my notes"},
        {"_root_path": "{usr}/oaio_root/Docs/", "_file_paths": ["a.txt"]},
        {"_file_paths": ["sub dir/x (1).txt"]},
        {"_file_paths": ["a", "b"]},
        {"_name": "ümlaut:*?<>|#;@&=+$%^,'\"[]{}()\\", "x": 1},
    ],
)
def test_object_id_matches_published_client(values: dict) -> None:
    stamp = model.now_stamp()
    ours = model.object_id("alice", "dev1", "app", stamp, values)
    theirs = ae_model.object_id(user_name="alice", device_id="dev1", app_id="app", stamp=stamp, values=values)
    assert ours == theirs


def test_defuse_table_matches_published() -> None:
    every = "".join(chr(c) for c in range(128)) + "://x"
    assert model.defuse(every) == ae_base.defuse(every)
    assert model.dedefuse(model.defuse(every)) == every


def test_context_headers_round_trip() -> None:
    hdrs = model.context_encode("üser", "dev", "app")
    assert hdrs == ae_model.context_encode("üser", "dev", "app")
    assert model.context_decode(hdrs) == ("üser", "dev", "app")


@pytest.mark.parametrize(
    "bad", ["alice", "__import__('os')", "b'\\xff'", "b'a' + b'b'", "'str'", "b'a\\nb'", 42, "b'" + "a" * 5000 + "'"]
)
def test_context_decode_refuses(bad: object) -> None:
    with pytest.raises(ValidationError):
        model.decode_context_value(bad, "X-OAIO-user")


def test_stamps() -> None:
    stamp = model.now_stamp()
    assert len(stamp) == 20 and stamp.isdigit()
    assert model.validate_stamp(stamp) == stamp
    assert abs(model.stamp_diff(stamp, ae_model.now_stamp())) < 5
    for bad in [
        "",
        "2022",
        model.OLDEST_SYNC_STAMP,
        "20251301000000000000",
        "２０２５０１０１０００００００００００００",
        2025,
    ]:
        with pytest.raises(ValidationError):
            model.validate_stamp(bad)
    assert model.validate_stamp("", allow_empty=True) == ""


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a/",
        "C:/x",
        "c:x",
        "a\\..\\b",
        "a\x00b",
        "a\nb",
        "x/\u202eexe",
        "a" * 256,
        "/".join(["a"] * 3000),
    ],
)
def test_unsafe_file_paths_refused(path: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model.validate_file_path(path)
    assert exc.value.field == "_file_paths"


@pytest.mark.parametrize("path", ["a.txt", "sub dir/ü/x (1).txt", ".hidden/.x", "a..b", "…/x"])
def test_safe_file_paths_pass(path: str) -> None:
    assert model.validate_file_path(path) == path


def test_values_validation_names_field() -> None:
    with pytest.raises(ValidationError, match=r"client_values\._file_paths"):
        model.validate_values({"_file_paths": ["../x"]})
    with pytest.raises(ValidationError, match="twice"):
        model.validate_values({"_file_paths": ["a", "a"]})
    with pytest.raises(ValidationError, match="plain JSON"):
        model.validate_values({"x": float("nan")})
    with pytest.raises(ValidationError, match="limit"):
        model.validate_values({"x": "y" * 100}, max_bytes=50)
    with pytest.raises(ValidationError, match="placeholder"):
        model.validate_values({"_root_path": "/x/{usr}"})
    user = {"free": {"nested": [1, 2, None]}, "_name": "n"}
    assert model.validate_values(user) is user


def test_oaio_id_validation() -> None:
    good = model.object_id("alice", "dev", "app", model.now_stamp(), {"_name": "x/y"})
    assert model.validate_oaio_id(good) == good
    for bad in ["", "a/b", "..", ".", "a\\b", "x" * 300, "ü" * 130, 7, " a"]:
        with pytest.raises(ValidationError):
            model.validate_oaio_id(bad)


def test_object_dict_exact_keys_and_round_trip() -> None:
    stamp = model.now_stamp()
    obj = ae_model.OaiObject(
        oaio_id="app⫻a﹫d⁄" + stamp,
        client_stamp=stamp,
        client_values={"k": "v"},
        csh_id="Local",
        username="a",
        device_id="d",
        app_id="app",
        csh_access_right="C",
    )
    wire = ae_model.object_dict(obj)
    ours = model.OaiObject.from_dict(wire)
    assert ours.to_dict() == wire
    assert ae_model.OaiObject(**ours.to_dict()) == obj
    with pytest.raises(ValidationError, match="unknown keys extra"):
        model.validate_object_dict({**wire, "extra": 1})
    with pytest.raises(ValidationError, match="missing client_stamp"):
        model.validate_object_dict({k: v for k, v in wire.items() if k != "client_stamp"})
    with pytest.raises(ValidationError, match="csh_access_right"):
        model.validate_object_dict({**wire, "csh_access_right": "Z"})


def test_rights_order() -> None:
    assert model.right_grants("C", "D") and model.right_grants("D", "U") and model.right_grants("U", "r")
    assert not model.right_grants("r", "U") and not model.right_grants("x", "r")


def test_storage_key() -> None:
    stamp = model.now_stamp()
    assert model.storage_key("id", stamp, "a/b.txt") == f"id/{stamp}/a/b.txt"
    with pytest.raises(ValidationError):
        model.storage_key("id", stamp, "../b.txt")
