"""The ``Rclone`` storage host: every provider rclone supports (Google Drive, Dropbox, OneDrive, SFTP, SMB…).

Driven through ``rclone rcd``, rclone's HTTP remote-control API, on a random loopback port, started by the
backend and stopped by :meth:`RcloneBackend.close`. Why rcd rather than one ``rclone`` process per call: a call
then costs one loopback HTTP request instead of a process start and a remote set-up (OAuth token refresh,
directory cache), and secrets never need to go on a command line.

* The remote is an rclone config section (``gdrive:``, read from ``config`` or rclone's default config) or a
  connection string (``:local:``, ``:webdav,url="https://dav.example.org/":``); a password goes in
  ``password`` / ``password_env`` / ``password_file``, is obscured with ``rclone obscure -`` (fed on stdin) and
  reaches rcd as ``RCLONE_<TYPE>_PASS`` (connection string) or ``RCLONE_CONFIG_<NAME>_PASS`` (section) in its
  environment. A ``pass=`` inside ``remote`` is refused. The rc user and password are random, also via env.
* Atomicity of put is the remote's: rclone writes many remotes in one request, but not all, so
  ``capabilities.atomic_put`` is False. Downloads are still atomic locally (temp file, fsync, rename).
* ``copy`` is server-side where the remote can (``fsinfo`` Features.Copy), else rclone streams it.
* rclone retries its own low-level failures; what still fails is mapped from rclone's error text (its only
  error channel) to the storage error tree. ``progress`` is reported once per transfer, at the end.
* Keys holding U+201B (rclone's escape character) are refused: rclone 1.60 stores them altered.
* Listing is one ``operations/list`` call per prefix (rclone answers with the whole list at once).

Arguments: ``remote``, ``root_folder``, optional ``config`` (path of an rclone.conf) and password forms.

Hosts with arguments of their own (the published client's ``Digi`` and ``Goodrive``) describe their remote as a
:class:`RemoteConfig`: a named remote that exists only in rcd's environment (``RCLONE_CONFIG_<NAME>_<KEY>``) with
rclone's config file switched off (``--config ""``), so neither a secret nor a section of the user's rclone.conf
is involved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from oaiod.errors import ConfigError
from oaiod.secrets import Secret, secret_from_args
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress
from oaiod.storage.errors import (
    InvalidKey,
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.keys import TEMP_PREFIX, temp_name, validate_key, validate_prefix
from oaiod.storage.toolkit import check_args, checked_listing, random_token, secret_arg_names

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with: apt-get install rclone (or see rclone.org/install)"
START_TIMEOUT = 20.0
_DENIED, _RETRY = StoragePermissionDenied, TransientStorageError
#: rclone's escape character: rclone 1.60 stores a name holding it with the character doubled, so refused
RCLONE_QUOTE = "\u201b"
#: rclone error text -> error class, first match wins
_ERROR_PATTERNS: tuple[tuple[re.Pattern[str], type[StorageError]], ...] = (
    (re.compile(r"object not found|directory not found|file not found|doesn't exist|not found", re.I), ObjectNotFound),
    (re.compile(r"permission denied|access denied|unauthori[sz]ed|forbidden|\b40[13]\b|read-only", re.I), _DENIED),
    (re.compile(r"quota|insufficient storage|\b507\b|no space left", re.I), QuotaExceeded),
    (re.compile(r"connection (refused|reset)|time(d )?out|\bEOF\b|too many requests|\b(429|50[0234])\b", re.I), _RETRY),
)


def translate_rclone_error(text: str, key: str | None, what: str) -> StorageError:
    """The storage error for an rclone error message."""
    message = f"{what} {key!r}: rclone: {text}"
    for pattern, error in _ERROR_PATTERNS:
        if pattern.search(text):
            return error(message, key=key)
    return PermanentStorageError(message, key=key)


def _has_control_char(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def find_rclone() -> str:
    """The rclone binary; a ConfigError with the install hint when there is none."""
    path = shutil.which("rclone")
    if path is None:
        raise ConfigError("csh_id", f"the Rclone storage host needs the rclone program; {INSTALL_HINT}")
    return path


def obscure(rclone: str, secret: str) -> str:
    """``secret`` in rclone's obscured form (what its configs hold), computed by ``rclone obscure -`` on stdin."""
    result = subprocess.run([rclone, "obscure", "-"], input=secret, capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise ConfigError("password", f"rclone obscure failed: {result.stderr.strip()[:200]}")
    return result.stdout.strip()


def password_env_name(remote: str) -> str:
    """The environment variable that gives ``remote`` its password."""
    if remote.startswith(":"):
        backend_type = re.split(r"[,:]", remote[1:], maxsplit=1)[0]
        return f"RCLONE_{backend_type.upper()}_PASS"
    return f"RCLONE_CONFIG_{re.sub(r'[^A-Za-z0-9]', '_', remote[:-1]).upper()}_PASS"


@dataclass(frozen=True)
class RemoteConfig:
    """An rclone remote defined wholly by rcd's environment: no config file, nothing on a command line.

    ``options`` are plain config keys of the rclone backend ``type``; ``secrets`` are keys whose values stay out
    of logs (``repr`` masks them), those named in ``obscured`` are passed in rclone's obscured form (its
    password options want that). ``path`` is the folder on the remote that keys are under.
    """

    name: str
    type: str
    path: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    obscured: frozenset[str] = frozenset()

    @property
    def remote(self) -> str:
        return f"{self.name}:"

    def env(self, rclone: str) -> dict[str, str]:
        """The ``RCLONE_CONFIG_<NAME>_<KEY>`` variables that define the remote (secrets revealed, some obscured)."""
        prefix = f"RCLONE_CONFIG_{re.sub(r'[^A-Za-z0-9]', '_', self.name).upper()}_"
        env = {prefix + "TYPE": self.type}
        env.update({prefix + key.upper(): value for key, value in self.options.items()})
        for key, secret in self.secrets.items():
            value = obscure(rclone, secret.reveal()) if key in self.obscured else secret.reveal()
            env[prefix + key.upper()] = value
        return env


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def validate_rclone_key(key: str, fld: str = "key") -> str:
    """A valid key (see :func:`validate_key`) without rclone's escape character U+201B, which does not round-trip."""
    validate_key(key, fld)
    if RCLONE_QUOTE in key:
        raise InvalidKey(fld, f"key {key[:80]!r} holds U+201B, which rclone cannot store exactly")
    return key


class RcloneBackend(Backend):
    """Objects on an rclone remote, through an ``rclone rcd`` process owned by this backend."""

    csh_id = "Rclone"

    def __init__(
        self,
        remote: str,
        root_folder: str = "",
        *,
        config: PathLike | None = None,
        password: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: more variables for rcd; given, rclone's config file is not read (``--config ""``): the remote
        is defined there (see :class:`RemoteConfig`)."""
        if not remote.endswith(":") or _has_control_char(remote):
            raise ConfigError("remote", f"must be a remote such as gdrive: or :local: ending in ':', not {remote!r}")
        if re.search(r"[,:]pass(word)?=", remote):
            raise ConfigError("remote", "must not hold a password; give password_env or password_file")
        if _has_control_char(root_folder):
            raise ConfigError("root_folder", "contains control characters")
        self.rclone = find_rclone()
        self.remote = remote
        self.fs = remote + root_folder.rstrip("/")
        self.config = Path(config).expanduser() if config else None
        if self.config is not None and not self.config.is_file():
            raise ConfigError("config", f"{self.config} is not an rclone config file")
        self._env = {**(env or {}), "RCLONE_RC_USER": "oaiod", "RCLONE_RC_PASS": random_token()}
        self._no_config_file = env is not None
        if password:
            self._env[password_env_name(remote)] = obscure(self.rclone, password)
        self._session = requests.Session()
        self._session.auth = (self._env["RCLONE_RC_USER"], self._env["RCLONE_RC_PASS"])
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = tempfile.NamedTemporaryFile(prefix="oaiod-rclone-", suffix=".log", delete=False)  # noqa: SIM115
        self._url = ""
        self._capabilities: Capabilities | None = None
        self._start()

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        """From the remote's features (asked once, when first needed; conservative while it cannot be asked)."""
        if self._capabilities is not None:
            return self._capabilities
        try:
            features = self._rc("operations/fsinfo", None, "cannot query", fs=self.fs).get("Features", {})
        except StorageError as exc:
            log.warning("cannot read the features of %s (%s); assuming no server-side copy", self.fs, exc)
            return Capabilities(atomic_put=False, chunked_progress=False)
        self._capabilities = Capabilities(
            server_side_copy=bool(features.get("Copy")), atomic_put=False, max_connections=4, chunked_progress=False
        )
        return self._capabilities

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> RcloneBackend:
        checked = check_args(
            args, cls.csh_id, required=("remote",), optional=("root_folder", "config", *secret_arg_names("password"))
        )
        password = secret_from_args(checked, "password", required=False)
        return cls(
            checked["remote"],
            checked.get("root_folder") or "",
            config=checked.get("config") or None,
            password=password.reveal() if password else None,
        )

    @classmethod
    def from_remote(cls, remote: RemoteConfig) -> RcloneBackend:
        """A backend on ``remote``, defined in rcd's environment only (for hosts with arguments of their own)."""
        return cls(remote.remote, remote.path, env=remote.env(find_rclone()))

    def describe(self) -> str:
        return f"{self.csh_id} {self.fs}"

    # -- the rcd process --------------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start ``rclone rcd`` on a free loopback port and wait until it answers (three tries for the port)."""
        for _attempt in range(3):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            argv = [self.rclone, "rcd", "--rc-addr", f"127.0.0.1:{port}", "--log-level", "NOTICE"]
            if self.config is not None:
                argv += ["--config", str(self.config)]
            elif self._no_config_file:
                argv += ["--config", ""]
            proc = subprocess.Popen(
                argv, env={**os.environ, **self._env}, stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            self._proc, self._url = proc, f"http://127.0.0.1:{port}/"
            self._finalizer = weakref.finalize(self, _stop_process, proc)
            if self._wait_ready(proc):
                log.info("started rclone rcd (pid %d) on 127.0.0.1:%d for %s", proc.pid, port, self.fs)
                return
            _stop_process(proc)
        raise PermanentStorageError(f"rclone rcd did not start: {self._log_tail()}")

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if self._session.post(self._url + "rc/noop", json={}, timeout=2).status_code == 200:
                    return True
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self._log_file.name).read_text(errors="replace")[-500:].strip()
        return ""

    def close(self) -> None:
        self._session.close()
        if self._proc is not None:
            self._finalizer()
            self._proc = None
        with contextlib.suppress(OSError):
            self._log_file.close()
            os.unlink(self._log_file.name)

    def _rc(self, command: str, key: str | None, what: str, **params: Any) -> dict[str, Any]:
        """One rc call; a dead rcd is restarted once (the call then fails as transient, for the retry wrapper)."""
        if self._proc is None:
            raise PermanentStorageError(f"{self.describe()} is closed", key=key)
        if self._proc.poll() is not None:
            log.warning("rclone rcd for %s died (exit %s); restarting it", self.fs, self._proc.returncode)
            self._start()
            raise TransientStorageError(f"{what} {key!r}: rclone rcd had died and was restarted", key=key)
        try:
            response = self._session.post(self._url + command, json=params, timeout=(5, None))
        except requests.RequestException as exc:
            raise TransientStorageError(f"{what} {key!r}: rclone rcd unreachable: {exc}", key=key) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text[:500]}
        if not isinstance(answer, dict):  # JSON, but not what rclone answers: refused here, not where it is read
            raise PermanentStorageError(f"{what} {key!r}: rclone answered {str(answer)[:200]!r}", key=key)
        if response.status_code != 200:
            raise translate_rclone_error(str(answer.get("error", response.reason)), key, what)
        return answer

    # -- primitives -------------------------------------------------------------------------------------------

    def _copyfile(self, src_fs: str, src: str, dst_fs: str, dst: str, key: str, what: str) -> None:
        self._rc("operations/copyfile", key, what, srcFs=src_fs, srcRemote=src, dstFs=dst_fs, dstRemote=dst,
                 _config={"IgnoreTimes": True})  # fmt: skip

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        validate_rclone_key(key)
        source = Path(local_path).absolute()
        size = source.stat().st_size
        self._copyfile(":local:" + str(source.parent), source.name, self.fs, key, key, "cannot upload")
        if progress is not None:
            progress(size)

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        validate_rclone_key(key)
        target = Path(local_path).absolute()
        tmp = target.parent / f"{TEMP_PREFIX}{random_token()[:16]}"
        try:
            self._copyfile(self.fs, key, ":local:" + str(target.parent), tmp.name, key, "cannot download")
            if fsync:
                with open(tmp, "rb+") as file:
                    os.fsync(file.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if progress is not None:
            progress(target.stat().st_size)

    def stat(self, key: str) -> ObjectInfo:
        validate_rclone_key(key)
        item = self._rc("operations/stat", key, "cannot stat", fs=self.fs, remote=key).get("item")
        if not item or item.get("IsDir"):
            raise ObjectNotFound(f"no object {key!r} on {self.describe()}", key=key)
        return ObjectInfo(key=key, size=int(item["Size"]), mtime=_mtime(item.get("ModTime")))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return checked_listing(self._list(prefix), self.describe())

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        opt = {"recurse": True, "filesOnly": True, "noMimeType": True}
        try:
            answer = self._rc("operations/list", prefix, "cannot list", fs=self.fs, remote=prefix, opt=opt)
        except ObjectNotFound:
            return
        for item in answer.get("list", []):
            yield ObjectInfo(key=str(item["Path"]), size=int(item["Size"]), mtime=_mtime(item.get("ModTime")))

    def delete(self, key: str) -> None:
        validate_rclone_key(key)
        with contextlib.suppress(ObjectNotFound):
            self._rc("operations/deletefile", key, "cannot delete", fs=self.fs, remote=key)

    # -- extras -----------------------------------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if not prefix:
            super().delete_prefix(prefix)  # refuses the empty prefix
        with contextlib.suppress(ObjectNotFound):
            self._rc("operations/purge", prefix, "cannot delete", fs=self.fs, remote=prefix)

    def copy(self, src: str, dst: str) -> None:
        """Copy to a temp name, delete ``dst``, move the copy into place.

        Some remotes' server-side copy refuses an existing destination (WebDAV with ``Overwrite: F``); this way
        ``dst`` is missing only for the moment of the move, never partial.
        """
        validate_rclone_key(src, "src")
        validate_rclone_key(dst, "dst")
        tmp = temp_name(dst)
        self._copyfile(self.fs, src, self.fs, tmp, src, "cannot copy")
        try:
            self.delete(dst)
            self._rc("operations/movefile", dst, "cannot move the copy into place for", srcFs=self.fs,
                     srcRemote=tmp, dstFs=self.fs, dstRemote=dst)  # fmt: skip
        except StorageError:
            with contextlib.suppress(StorageError):
                self._rc("operations/deletefile", tmp, "cannot clean up", fs=self.fs, remote=tmp)
            raise


def _mtime(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
