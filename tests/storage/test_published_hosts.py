"""The published client's storage hosts ``Digi`` and ``Goodrive``: argument mapping, refusals, secrets, layout.

Digi Storage and Google Drive cannot be reached from here. What is tested: which rclone remote each set of the
published client's arguments becomes (type, options, secrets), that bad or missing arguments are refused in one
line naming the argument, that no secret reaches rcd's command line, and the key layout, against a real rclone
rcd on a *local* stand-in remote (only the remote's type swapped; see ``storage_stores.local_stand_in``); the
conformance suite runs both the same way (``digi_local``, ``goodrive_local``). Digi also runs through rclone's
real ``koofr`` remote against a Koofr-API server on loopback (``koofr_server.py``, only the endpoint swapped):
the published client's own ``DigiApi`` and oaiod's backend read each other's files there. Goodrive's credentials
are followed up to the token request (a loopback token endpoint). Not tested: a log-in to either real service,
Digi's mount choice, and what either service does beyond the modelled API.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from koofr_server import start_koofr
from storage_stores import DIGI_ARGS, goodrive_args, local_stand_in

from oaiod.errors import ConfigError
from oaiod.model import storage_key
from oaiod.storage import registry
from oaiod.storage.digi import DIGI_ENDPOINT, DigiBackend, digi_remote
from oaiod.storage.goodrive import GoodriveBackend, goodrive_remote

needs_rclone = pytest.mark.skipif(shutil.which("rclone") is None, reason="the rclone program is not installed")
OAIO_ID = "app⫻alice﹫dev⁄name⁄20250101120000123456"
STAMP = "20250102030405060708"


def test_registry_offers_both_ids() -> None:
    assert registry.backend_class("Digi") is DigiBackend
    assert registry.backend_class("Goodrive") is GoodriveBackend


def test_digi_arguments_become_a_koofr_remote() -> None:
    remote = digi_remote(DIGI_ARGS)
    assert (remote.type, remote.path) == ("koofr", "oaio/files")
    assert remote.options == {"provider": "other", "endpoint": DIGI_ENDPOINT, "user": "alice@example.org"}
    assert remote.secrets["password"].reveal() == DIGI_ARGS["password"]
    assert remote.obscured == {"password"}
    assert DIGI_ARGS["password"] not in repr(remote)
    assert digi_remote({"email": "a@b.c", "password": "p"}).path == ""
    assert digi_remote({"email": "a@b.c", "password": "p", "root_folder": "/x/y/"}).path == "x/y"


def test_digi_password_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline (what the hub's csh_args give the published client), or oaiod's _env / _file forms."""
    monkeypatch.setenv("DIGI_PASS", "from env")
    assert digi_remote({"email": "a@b.c", "password_env": "DIGI_PASS"}).secrets["password"].reveal() == "from env"
    secret = tmp_path / "pass"
    secret.write_text("from file\n")
    secret.chmod(0o600)
    assert digi_remote({"email": "a@b.c", "password_file": str(secret)}).secrets["password"].reveal() == "from file"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"password": "p"}, "email"),
        ({"email": "", "password": "p"}, "email"),
        ({"email": "not an address", "password": "p"}, "email"),
        ({"email": "a@b.c"}, "password"),
        ({"email": "a@b.c", "password": "p", "password_env": "X"}, "password"),
        ({"email": "a@b.c", "password": "p", "root_folder": "a/../b"}, "root_folder"),
        ({"email": "a@b.c", "password": "p", "root_folder": "a//b"}, "root_folder"),
        ({"email": "a@b.c", "password": "p", "root_folder": 7}, "root_folder"),
        ({"email": "a@b.c", "password": "p", "endpoint": "https://evil"}, "endpoint"),
    ],
)
def test_digi_refuses_bad_arguments(args: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        digi_remote(args)
    assert caught.value.key == named
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{named}: ")


def service_account() -> dict[str, str]:
    return {"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key": "KEY"}


def test_goodrive_service_account_dict_goes_to_the_environment_only() -> None:
    remote = goodrive_remote({"root_folder": "1AbC_-x", "sa_cred_dict": service_account()})
    assert remote.type == "drive" and remote.path == ""
    assert remote.options == {"scope": "drive", "use_trash": "false", "root_folder_id": "1AbC_-x"}
    assert json.loads(remote.secrets["service_account_credentials"].reveal()) == service_account()
    assert "KEY" not in repr(remote)
    # its JSON text (from `oaiod storage … sa_cred_dict=…`) is the same; "root" (the default) is My Drive
    text = goodrive_remote({"sa_cred_dict": json.dumps(service_account()), "root_folder": "root"})
    assert "root_folder_id" not in text.options


def test_goodrive_service_account_file_by_path(tmp_path: Path) -> None:
    args = goodrive_args(tmp_path)
    remote = goodrive_remote(args)
    assert remote.options["service_account_file"] == args["sa_cred_file"] and not remote.secrets
    # the published client's order: the dict wins over the file; a missing sa file falls back to OAuth
    both = goodrive_remote({**args, "sa_cred_dict": service_account()})
    assert "service_account_credentials" in both.secrets and "service_account_file" not in both.options


def write_json(path: Path, value: dict[str, Any]) -> str:
    path.write_text(json.dumps(value))
    path.chmod(0o600)
    return str(path)


def test_goodrive_oauth_token_of_the_published_client(tmp_path: Path) -> None:
    """oa_cred_file: the published client's cached token (authorized_user), or the client secrets beside it."""
    token = {"token": "ya29.old", "refresh_token": "1//refresh", "client_id": "cid", "client_secret": "csecret",
             "token_uri": "https://oauth2.googleapis.com/token", "expiry": "2020-01-01T00:00:00Z"}  # fmt: skip
    direct = goodrive_remote({"oa_cred_file": write_json(tmp_path / "tok.json", token)})
    assert direct.options["client_id"] == "cid"
    assert direct.secrets["client_secret"].reveal() == "csecret"
    rclone_token = json.loads(direct.secrets["token"].reveal())
    assert rclone_token["refresh_token"] == "1//refresh" and rclone_token["access_token"] == ""

    client = {"installed": {"client_id": "cid2", "client_secret": "cs2", "redirect_uris": ["http://localhost"]}}
    secrets_file = write_json(tmp_path / "client.json", client)
    with pytest.raises(ConfigError, match=r"^oa_cred_file: holds an OAuth client but no token"):
        goodrive_remote({"oa_cred_file": secrets_file, "sa_cred_file": str(tmp_path / "missing.json")})
    write_json(tmp_path / ".token.json", {k: v for k, v in token.items() if k not in ("client_id", "client_secret")})
    beside = goodrive_remote({"oa_cred_file": secrets_file})
    assert beside.options["client_id"] == "cid2" and beside.secrets["client_secret"].reveal() == "cs2"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({}, "sa_cred_dict"),
        ({"root_folder": "x"}, "sa_cred_dict"),
        ({"root_folder": "a/b", "sa_cred_dict": service_account()}, "root_folder"),
        ({"sa_cred_dict": {"type": "authorized_user"}}, "sa_cred_dict"),
        ({"sa_cred_dict": "{not json"}, "sa_cred_dict"),
        ({"sa_cred_dict": ["x"]}, "sa_cred_dict"),
        ({"sa_cred_file": "/nonexistent/sa.json"}, "sa_cred_file"),
        ({"oa_cred_file": "/nonexistent/oa.json"}, "oa_cred_file"),
        ({"sa_cred_dict": service_account(), "email": "x"}, "email"),
    ],
)
def test_goodrive_refuses_bad_arguments(args: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        goodrive_remote(args)
    assert caught.value.key == named
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{named}: ")


def test_goodrive_refuses_a_token_without_refresh_token(tmp_path: Path) -> None:
    path = write_json(tmp_path / "tok.json", {"client_id": "c", "client_secret": "s", "token": "ya29"})
    with pytest.raises(ConfigError, match=r"^oa_cred_file: .* has no refresh_token"):
        goodrive_remote({"oa_cred_file": path})


@needs_rclone
def test_secrets_reach_rcd_by_environment_only(tmp_path: Path) -> None:
    """The Digi password is in rcd's environment, obscured; not on its command line, not in any file here."""
    backend = DigiBackend.from_remote(local_stand_in(digi_remote(DIGI_ARGS), tmp_path / "host"))
    try:
        assert backend._proc is not None
        pid = backend._proc.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if item
        )
        assert DIGI_ARGS["password"] not in cmdline and "--config\0\0" in cmdline + "\0"
        obscured = environ["RCLONE_CONFIG_OAIOD_DIGI_PASSWORD"]
        assert obscured and obscured != DIGI_ARGS["password"]
        assert environ["RCLONE_CONFIG_OAIOD_DIGI_USER"] == "alice@example.org"
        assert environ["RCLONE_CONFIG_OAIOD_DIGI_ENDPOINT"] == DIGI_ENDPOINT
        for file in tmp_path.rglob("*"):
            assert not file.is_file() or DIGI_ARGS["password"].encode() not in file.read_bytes()
        assert backend.describe() == f"Digi oaiod_digi:{tmp_path / 'host' / 'oaio' / 'files'}"
    finally:
        backend.close()


def published_path(root_folder: str, oaio_id: str, stamp: str, file_path: str) -> str:
    """Where the published client puts a version's file: its own code (ae.oaio_client 0.3.19), not a copy.

    ``OaioClient._client_server_file_api_paths`` is run on a stand-in client (its storage host is what cannot be
    reached); ``DigiApi._request`` joins the root folder the same way (``os_path_join(root_folder, path)``).
    """
    from ae.base import os_path_join
    from ae.oaio_client import OaioClient
    from ae.oaio_model import FILES_VALUES_KEY, OaiObject

    class StandIn:
        client_root = "/unused"

        def _csh_api(self, csh_id: str) -> object:
            return object()

        def _client_file_root(self, oaio_id: str, values: dict[str, Any]) -> str:
            return "/unused"

    obj = OaiObject(oaio_id=oaio_id, client_stamp=stamp, csh_id="Digi", client_values={FILES_VALUES_KEY: [file_path]})
    files, _api, _client_path, server_path = OaioClient._client_server_file_api_paths(StandIn(), obj)  # type: ignore[arg-type]
    assert files == [file_path]
    return str(os_path_join(root_folder, os_path_join(server_path, file_path)))


@needs_rclone
@pytest.mark.parametrize("csh_id", ["Digi", "Goodrive"])
def test_key_layout_is_the_published_clients(tmp_path: Path, csh_id: str) -> None:
    """A file oaiod stores lands where the published client puts (and looks for) it under the root folder."""
    pytest.importorskip("ae.oaio_client")
    host = tmp_path / "host"
    if csh_id == "Digi":
        remote, root_folder, cls = digi_remote(DIGI_ARGS), DIGI_ARGS["root_folder"], DigiBackend
    else:
        remote, root_folder, cls = goodrive_remote(goodrive_args(tmp_path)), "", GoodriveBackend
    backend = cls.from_remote(local_stand_in(remote, host))
    source = tmp_path / "source"
    source.write_bytes(b"content")
    try:
        backend.put_file(storage_key(OAIO_ID, STAMP, "sub dir/file ä.txt"), source)
    finally:
        backend.close()
    expected = published_path(root_folder, OAIO_ID, STAMP, "sub dir/file ä.txt")
    assert (host / expected).read_bytes() == b"content"
    assert [str(p.relative_to(host)) for p in host.rglob("*") if p.is_file()] == [expected]
    assert not os.path.isabs(expected)


@needs_rclone
def test_digi_and_the_published_client_read_each_others_files(tmp_path: Path) -> None:
    """On one Koofr-API server: a file the published client deploys is a key oaiod lists and reads, one oaiod
    writes the published client reads, and its folder delete (``unregister_object(wipe_files=True)``) empties the
    version for oaiod. The published client logs in by ``/token``, rclone by basic auth: both with ``password``."""
    ae_storage = pytest.importorskip("ae.cloud_storage")
    server = start_koofr(tmp_path / "koofr", DIGI_ARGS["email"], DIGI_ARGS["password"])

    class LoopbackDigiApi(ae_storage.DigiApi):  # type: ignore[misc,name-defined]
        """The published DigiApi unchanged but for its fixed host (its name must end in Api: it registers)."""

        base_url = property(lambda self: server.url, lambda self, value: None)

    remote = digi_remote(DIGI_ARGS)
    backend = DigiBackend.from_remote(dataclasses.replace(remote, options={**remote.options, "endpoint": server.url}))
    try:
        published = LoopbackDigiApi(**DIGI_ARGS)
        source = tmp_path / "published.txt"
        source.write_text("from the published client")
        key = storage_key(OAIO_ID, STAMP, "sub dir/file ä.txt")
        assert published.deploy_file(key, source_path=str(source)) == key, published.error_message
        assert [info.key for info in backend.list(OAIO_ID)] == [key]
        backend.get_file(key, tmp_path / "got")
        assert (tmp_path / "got").read_text() == "from the published client"

        mine = storage_key(OAIO_ID, STAMP, "oaiod.txt")
        (tmp_path / "mine").write_text("from oaiod")
        backend.put_file(mine, tmp_path / "mine")
        assert published.deployed_file_content(mine) == b"from oaiod"
        assert (server.root / DIGI_ARGS["root_folder"] / mine).read_text() == "from oaiod"  # under root_folder

        assert published.delete_file_or_folder(f"{OAIO_ID}/{STAMP}/") == ""
        assert list(backend.list(OAIO_ID)) == []
        logins = {auth for _method, _path, auth in server.requests()}
        assert logins == {"token", "basic"}
    finally:
        backend.close()
        server.stop()


def test_the_hub_masks_and_warns_about_goodrive_credentials() -> None:
    """``hub storage list`` masks, and ``hub storage set`` warns about, a service account key given as a dict."""
    from oaiod.hub.accounts import looks_secret

    assert looks_secret("sa_cred_dict") and looks_secret("password") and not looks_secret("root_folder")


def _rsa_key() -> tuple[str, Any]:
    crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    from cryptography.hazmat.primitives import serialization

    key = crypto.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def _token_server() -> Any:
    from tests.httpfixtures import Reply, ScriptedServer

    server = ScriptedServer()
    server.on("POST", "/token", Reply(200, {"access_token": "ya29.test", "expires_in": 3600, "token_type": "Bearer"}))
    return server


def _list_fails_offline(backend: Any) -> None:
    """After the log-in, Drive itself (www.googleapis.com) cannot be reached from here: the listing fails."""
    from oaiod.storage.errors import StorageError

    try:
        with pytest.raises(StorageError):
            list(backend.list(""))
    finally:
        backend.close()


@needs_rclone
def test_goodrive_service_account_key_signs_rclones_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sa_cred_dict`` reaches rclone intact: it signs a JWT with the key for the drive scope and sends it to the
    key's ``token_uri`` (here a loopback server; Google's in a real key). Nothing past the log-in is verified."""
    from urllib.parse import parse_qsl

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    monkeypatch.setenv("RCLONE_LOW_LEVEL_RETRIES", "1")  # Drive's API is unreachable: fail at once
    pem, public = _rsa_key()
    server = _token_server()
    key = {**service_account(), "private_key": pem, "token_uri": f"{server.url}token", "private_key_id": "k1"}
    try:
        _list_fails_offline(GoodriveBackend.from_remote(goodrive_remote({"sa_cred_dict": key, "root_folder": "1x"})))
        [login] = server.requests_to("/token", "POST")
        form = dict(parse_qsl(login.body.decode()))
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        header, claims, signature = form["assertion"].split(".")

        def decode(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        public.verify(decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        said = json.loads(decode(claims))
        assert said["iss"] == key["client_email"] and said["scope"] == "https://www.googleapis.com/auth/drive"
    finally:
        server.close()


@needs_rclone
def test_goodrive_oauth_token_is_refreshed_with_its_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``oa_cred_file`` reaches rclone intact: it refreshes the token with the refresh token and the OAuth client
    (only rclone's ``token_url`` swapped for a loopback server). Nothing past the log-in is verified."""
    from urllib.parse import parse_qsl

    monkeypatch.setenv("RCLONE_LOW_LEVEL_RETRIES", "1")
    token = {"refresh_token": "1//refresh", "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret"}
    remote = goodrive_remote({"oa_cred_file": write_json(tmp_path / "tok.json", token), "root_folder": "1x"})
    server = _token_server()
    try:
        swapped = dataclasses.replace(remote, options={**remote.options, "token_url": f"{server.url}token"})
        _list_fails_offline(GoodriveBackend.from_remote(swapped))
        logins = server.requests_to("/token", "POST")
        assert logins, "rclone never asked for a token"
        form = dict(parse_qsl(logins[0].body.decode()))
        assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "1//refresh"
        basic = base64.b64decode(logins[0].headers.get("authorization", "Basic ")[6:]).decode()
        assert {form.get("client_id"), basic.partition(":")[0]} & {token["client_id"]}
        assert token["client_secret"] in (form.get("client_secret"), basic.partition(":")[2])
    finally:
        server.close()
