"""The blob store's content in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Backblaze B2…), via boto3.

Needs the ``s3`` extra. Content ``abcd…`` is the object ``<prefix>sha256/abcd…``; names, rights and unfinished
uploads stay in the hub's database and on its disk (:mod:`oaiod.hub.blobcontent`). Choices an operator notices:

- Credentials are the hub's alone: boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  ``~/.aws/credentials``, an instance role…) or ``--s3-credentials-file``, an AWS credentials file (``[default]``
  with ``aws_access_key_id`` and ``aws_secret_access_key``) that must not be readable by group or others. They are
  never on a command line, in the settings' ``repr`` or in a log line, and never sent to a client: a client gets
  at most a pre-signed URL for one object, valid for :data:`URL_LIFETIME` seconds.
- With ``direct`` the hub answers a download negotiation with a pre-signed GET on ``public_endpoint`` (the address
  clients reach the bucket at; the endpoint itself by default): contents then bypass the hub.
- botocore retries transient failures itself (standard mode, 3 attempts): the hub has no retry wrapper around it.
- Errors enter through :func:`oaiod.storage.s3.translate_boto_errors` and leave as the hub's errors: a missing
  object :class:`~oaiod.hub.blobcontent.ContentMissing`, a full bucket 507, anything else 503 (logged with its
  details once per call, without credentials).
"""

from __future__ import annotations

import configparser
import contextlib
import datetime as _dt
import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig

from oaiod.errors import ConfigError
from oaiod.hub.blobcontent import ContentMissing, ContentStore, DirectParts, DirectUrl
from oaiod.hub.errors import BadRequest, Conflict, InsufficientStorage, StoreUnavailable
from oaiod.model import STAMP_FORMAT
from oaiod.storage.errors import ObjectNotFound, QuotaExceeded, StorageError
from oaiod.storage.s3 import translate_boto_errors
from oaiod.storage.toolkit import require_https

log = logging.getLogger("oaiod.hub.blobs")

MIB = 1024 * 1024
URL_LIFETIME = 900  #: seconds a pre-signed URL is valid: enough to start a transfer, short enough to leak little
#: seconds a part URL of a direct upload is valid: a part (≥ 16 MiB) must be able to go on a slow line; a client
#: that takes longer renews the upload (createUpload again) for fresh URLs
PART_URL_LIFETIME = 3600
PLACE_THREADS = 8  #: uploads of a batch's small contents at once
MIN_PART = 16 * MIB  #: part size of a direct upload (S3: at least 5 MiB but the last, at most 10,000 parts)
MAX_PARTS = 10_000
HASH_BLOCK = 8 * MIB
ASK_FIRST = MIB  #: contents above this are looked up before they are stored (those below: one PUT, not two requests)


def read_credentials_file(path: Path) -> tuple[str, str]:
    """``(access key id, secret)`` from an AWS credentials file's ``[default]`` section; refused when group or
    others may read it (the secret would be theirs too)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("s3_credentials_file", f"cannot read {path}: {exc}") from None
    if mode & 0o077:
        raise ConfigError("s3_credentials_file", f"{path} is mode {mode:03o}: other users may read it; chmod 600 it")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, str(path))
        section = parser["default"]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except (configparser.Error, KeyError):
        raise ConfigError(
            "s3_credentials_file", f"{path} needs a [default] section with aws_access_key_id and aws_secret_access_key"
        ) from None


@contextlib.contextmanager
def hub_errors(key: str, what: str) -> Iterator[None]:
    """boto3's errors in the block as the hub's: missing → ContentMissing, full → 507, the rest → 503."""
    try:
        with translate_boto_errors(key, what):
            yield
    except ObjectNotFound:
        raise ContentMissing(f"no content {key.rsplit('/', 1)[-1]} in the blob store's bucket") from None
    except QuotaExceeded:
        raise InsufficientStorage("the blob store's bucket is full") from None
    except StorageError as exc:
        log.warning("blob store bucket: %s", exc)
        raise StoreUnavailable(f"the blob store's bucket failed ({type(exc).__name__}); retry later") from None


class S3Content(ContentStore):
    """Content as objects ``<prefix>sha256/<sha256>`` in ``bucket``."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str = "",
        region: str = "",
        prefix: str = "",
        credentials_file: Path | None = None,
        direct: bool = False,
        public_endpoint: str = "",
        allow_http: bool = False,
    ) -> None:
        if not bucket:
            raise ConfigError("s3_bucket", "the S3 blob store needs a bucket (--s3-bucket)")
        self.bucket = bucket
        self.endpoint_url = _checked_url(endpoint_url, "s3_endpoint", allow_http)
        self.public_endpoint = _checked_url(public_endpoint or self.endpoint_url, "s3_public_endpoint", allow_http)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._direct = direct
        keys = read_credentials_file(credentials_file) if credentials_file else (None, None)
        session = boto3.session.Session(aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                                        region_name=region or None)  # fmt: skip
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            max_pool_connections=32,
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            signature_version="s3v4",
            connect_timeout=10,
            read_timeout=120,
        )
        region_name = region or session.region_name or "us-east-1"
        self.client: Any = session.client("s3", endpoint_url=self.endpoint_url or None, region_name=region_name,
                                          config=config)  # fmt: skip
        # signs URLs for the address clients use (no request is made with it)
        self.signer: Any = (
            session.client("s3", endpoint_url=self.public_endpoint or None, region_name=region_name, config=config)
            if self.public_endpoint != self.endpoint_url
            else self.client
        )
        self.transfer = TransferConfig(multipart_threshold=32 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"bucket s3://{self.bucket}/{self.prefix}sha256/{where}" + (
            " (direct transfers)" if self._direct else ""
        )

    def key(self, sha256: str) -> str:
        return f"{self.prefix}sha256/{sha256}"

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    def size(self, sha256: str) -> int | None:
        try:
            with hub_errors(self.key(sha256), "cannot look up"):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ContentMissing:
            return None
        return int(head["ContentLength"])

    def place(self, staged: Sequence[tuple[str, Path]]) -> None:
        """Upload each staged file unless its content is there already; several at once for a batch."""
        if len(staged) <= 1:
            for sha256, path in staged:
                self._place_one(sha256, path)
            return
        with ThreadPoolExecutor(PLACE_THREADS, thread_name_prefix="blob-place") as pool:
            for done in [pool.submit(self._place_one, sha256, path) for sha256, path in staged]:
                done.result()

    def _place_one(self, sha256: str, path: Path) -> None:
        with open(path, "rb") as file:  # FileNotFoundError: its upload was dropped meanwhile
            small = os.fstat(file.fileno()).st_size <= ASK_FIRST
            if small or not self.exists(sha256):  # a small content is put again rather than asked about first
                with hub_errors(self.key(sha256), "cannot store"):  # by name: boto3 reads each part lazily
                    self.client.upload_file(os.fspath(path), self.bucket, self.key(sha256), Config=self.transfer)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def exists_many(self, sha256s: Sequence[str]) -> list[bool]:
        if len(sha256s) <= 1:
            return [self.exists(sha256) for sha256 in sha256s]
        with ThreadPoolExecutor(PLACE_THREADS, thread_name_prefix="blob-head") as pool:
            return list(pool.map(self.exists, sha256s))

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if start:
            params["Range"] = f"bytes={start}-"
        with hub_errors(self.key(sha256), "cannot read"):
            answer = self.client.get_object(**params)
        return cast(BinaryIO, _Body(answer["Body"], self.key(sha256)))

    def remove(self, sha256: str) -> None:
        with hub_errors(self.key(sha256), "cannot remove"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def remove_many(self, sha256s: Sequence[str]) -> None:
        """``DeleteObjects`` in batches of 1000."""
        names = [{"Key": self.key(sha256)} for sha256 in sha256s]
        for first in range(0, len(names), 1000):
            batch = names[first : first + 1000]
            with hub_errors(batch[0]["Key"], "cannot remove"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                error = answer["Errors"][0]
                log.warning("blob store bucket: %d objects not removed, first %s: %s %s", len(answer["Errors"]),
                            error.get("Key"), error.get("Code"), error.get("Message"))  # fmt: skip

    def iter_content(self) -> Iterator[str]:
        start = f"{self.prefix}sha256/"
        with hub_errors(start, "cannot list"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"][len(start) :]
                    if len(name) == 64:
                        yield name

    def check(self) -> None:
        with hub_errors(self.bucket, "cannot reach the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def direct(self) -> bool:
        return self._direct

    def download_url(self, sha256: str, size: int) -> DirectUrl | None:
        if not self._direct:
            return None
        params = {"Bucket": self.bucket, "Key": self.key(sha256), "ResponseContentType": "application/octet-stream"}
        url = self.signer.generate_presigned_url("get_object", Params=params, ExpiresIn=URL_LIFETIME)
        return DirectUrl(url, {}, _stamp_in(URL_LIFETIME))

    # -- direct uploads: S3 multipart uploads of <prefix>uploads/<stage>, parts put by the client ------------------

    def stage_key(self, stage: str) -> str:
        return f"{self.prefix}uploads/{stage}"

    def _multipart_ids(self, stage: str) -> list[str]:
        key = self.stage_key(stage)
        with hub_errors(key, "cannot list the uploads of"):
            answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        return [upload["UploadId"] for upload in answer.get("Uploads", []) if upload["Key"] == key]

    def direct_upload(self, stage: str, size: int) -> DirectParts | None:
        if not self._direct:
            return None
        key = self.stage_key(stage)
        found = self._multipart_ids(stage)
        if found:
            upload_id = found[0]
        else:
            with hub_errors(key, "cannot start the upload of"):
                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        per_part = -(-size // MAX_PARTS)  # rounded up, then to whole MiB
        part_size = max(MIN_PART, -(-per_part // MIB) * MIB)
        count = max(1, -(-size // part_size))
        urls = [
            self.signer.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
                ExpiresIn=PART_URL_LIFETIME,
            )
            for number in range(1, count + 1)
        ]
        return DirectParts(part_size, urls, _stamp_in(PART_URL_LIFETIME))

    def _parts(self, stage: str) -> tuple[str, list[dict[str, Any]]] | None:
        found = self._multipart_ids(stage)
        if not found:
            return None
        key, parts = self.stage_key(stage), []
        with hub_errors(key, "cannot list the parts of"):
            for page in self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key,
                                                                         UploadId=found[0]):  # fmt: skip
                parts.extend(page.get("Parts", []))
        return found[0], sorted(parts, key=lambda part: part["PartNumber"])

    def direct_received(self, stage: str) -> int | None:
        if not self._direct:
            return None
        found = self._parts(stage)
        if found is None:
            return None
        return _contiguous(found[1])[1]

    def finish_direct(self, stage: str, sha256: str, size: int) -> None:
        found = self._parts(stage)
        if found is None:
            raise ContentMissing("no direct upload of this name in the bucket")
        upload_id, parts = found
        complete, received = _contiguous(parts)
        if received != size or len(complete) != len(parts):
            raise Conflict(f"received {received} of {size} bytes; send the rest first", received=received)
        key = self.stage_key(stage)
        listed = [{"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in complete]
        with hub_errors(key, "cannot assemble"):
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": listed})  # fmt: skip
        try:
            digest = self._hash(key)
            if digest != sha256:
                raise BadRequest(f"the data has sha256 {digest}, not {sha256}; the upload is discarded")
            if not self.exists(sha256):
                source = {"Bucket": self.bucket, "Key": key}
                with hub_errors(key, "cannot store"):
                    self.client.copy(source, self.bucket, self.key(sha256), Config=self.transfer)
        finally:
            with hub_errors(key, "cannot remove"):
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def _hash(self, key: str) -> str:
        digest = hashlib.sha256()
        with hub_errors(key, "cannot read"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        with contextlib.closing(_Body(body, key)) as reader:
            while block := reader.read(HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def drop_direct(self, stages: Sequence[str]) -> None:
        if not self._direct:
            return
        for stage in stages:
            key = self.stage_key(stage)
            for upload_id in self._multipart_ids(stage):
                with hub_errors(key, "cannot abort"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def stray_direct(self, known: set[str], older_than: float) -> int:
        if not self._direct:
            return 0
        start = f"{self.prefix}uploads/"
        horizon = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=older_than)
        count = 0
        with hub_errors(start, "cannot list the uploads of"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=start)
            strays = [
                upload
                for page in pages
                for upload in page.get("Uploads", [])
                if upload["Key"][len(start) :] not in known and upload["Initiated"] < horizon
            ]
        for upload in strays:
            with hub_errors(upload["Key"], "cannot abort"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            count += 1
        return count

    def close(self) -> None:
        self.client.close()
        if self.signer is not self.client:
            self.signer.close()


class _Body:
    """A ``get_object`` body as a file to read, its errors translated."""

    def __init__(self, body: Any, key: str) -> None:
        self._body, self._key = body, key

    def read(self, amount: int = -1) -> bytes:
        with hub_errors(self._key, "cannot read"):
            return cast(bytes, self._body.read(None if amount < 0 else amount))

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _checked_url(url: str, option: str, allow_http: bool) -> str:
    """``url`` without a trailing ``/`` (empty stays empty); plain http only to loopback or with ``allow_http``."""
    if not url:
        return ""
    try:
        return require_https(url, option, allow_http=allow_http)
    except ConfigError as exc:
        raise ConfigError(option, str(exc.reason).replace("set allow_http=true", "give --s3-allow-http")) from None


def _contiguous(parts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The parts from number 1 on without a gap, and their bytes."""
    complete: list[dict[str, Any]] = []
    for expected, part in enumerate(parts, start=1):
        if part["PartNumber"] != expected:
            break
        complete.append(part)
    return complete, sum(int(part["Size"]) for part in complete)


def _stamp_in(seconds: float) -> str:
    return (_dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=seconds)).strftime(STAMP_FORMAT)
