"""The ``S3`` storage host: any S3-compatible store (AWS, MinIO, Ceph RGW, Backblaze B2, Wasabi…) via boto3.

Needs the ``s3`` extra (``pip install 'oaiod[s3]'``). Objects are ``<prefix>/<key>`` in ``bucket``; keys are UTF-8,
so non-ASCII oaio ids round-trip exactly. Choices a user may notice:

* Uploads above 64 MiB go in 16 MiB parts (boto3's TransferConfig), four at a time; S3 makes a finished PUT or
  multipart upload visible at once, so puts are atomic.
* ``copy`` is server-side (``CopyObject``, multipart copy above the threshold, needed above 5 GiB).
  ``copy_many`` sends one ``CopyObject`` per pair (no ``HeadObject`` first) on ``max_connections`` threads; an
  object beyond what one ``CopyObject`` takes goes through ``copy``.
* Listing is paginated (1000 keys a page); ``delete_prefix`` deletes in batches of 1000.
* botocore's own retries are off: the one retry policy is :class:`oaiod.storage.wrappers.RetryingBackend`, so a
  503 or SlowDown is retried once in one place, with its backoff and its log lines.
* Custom endpoints use path-style addressing (works with MinIO and friends without DNS for buckets).
* Plain ``http://`` endpoints are refused for non-loopback hosts unless ``allow_http=true``.

Arguments: ``bucket``; optional ``endpoint_url``, ``region``, ``prefix``, ``access_key_id`` and
``secret_access_key`` (each also as ``_env`` / ``_file``; without them boto3's usual credential chain is used),
``allow_http``. Only this module touches boto3; its errors become the storage error tree here.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig

from oaiod.errors import ConfigError
from oaiod.secrets import secret_from_args
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress
from oaiod.storage.errors import (
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.keys import validate_key, validate_prefix
from oaiod.storage.toolkit import (
    atomic_local_file,
    check_args,
    checked_listing,
    copy_on_threads,
    require_https,
    secret_arg_names,
    truthy_arg,
    validate_pairs,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MIB
MULTIPART_CHUNK = 16 * MIB
DELETE_BATCH = 1000

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_TOO_LARGE_TO_COPY = {"InvalidRequest", "EntityTooLarge"}  #: CopyObject of a source beyond 5 GiB
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "AuthFailure"}
_QUOTA = {"QuotaExceeded", "StorageQuotaExceeded", "InsufficientStorage", "507"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "TooManyRequests",
    "500",
    "502",
    "503",
    "504",
}
_TRANSIENT_BOTOCORE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)


def translate_client_error(exc: botocore.exceptions.ClientError, key: str | None, what: str) -> StorageError:
    """The storage error for an S3 error code (or its HTTP status where the code is bare)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    message = f"{what} {key!r}: {code or status} {error.get('Message', '')}".rstrip()
    if code in _NOT_FOUND:
        return ObjectNotFound(message, key=key)
    if code == "NoSuchBucket":
        return PermanentStorageError(f"{message} (check the bucket argument)", key=key)
    if code in _DENIED or status == "403":
        return StoragePermissionDenied(message, key=key)
    if code in _QUOTA:
        return QuotaExceeded(message, key=key)
    if code in _TRANSIENT or status in _TRANSIENT or status == "429":
        return TransientStorageError(message, key=key)
    return PermanentStorageError(message, key=key)


@contextlib.contextmanager
def translate_boto_errors(key: str | None, what: str) -> Iterator[None]:
    """Turn boto3/botocore exceptions (also those wrapped by the transfer manager) into the storage tree."""
    try:
        yield
    except StorageError:
        raise
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, S3UploadFailedError,
            S3TransferFailedError) as exc:  # fmt: skip
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, (botocore.exceptions.ClientError, *_TRANSIENT_BOTOCORE)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, botocore.exceptions.ClientError):
            raise translate_client_error(cause, key, what) from exc
        if cause is not None:
            raise TransientStorageError(f"{what} {key!r}: {cause}", key=key) from exc
        if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            raise StoragePermissionDenied(f"{what} {key!r}: {exc}", key=key) from exc
        raise PermanentStorageError(f"{what} {key!r}: {exc}", key=key) from exc


class S3Backend(Backend):
    """Objects in an S3 bucket under an optional prefix."""

    csh_id = "S3"
    capabilities = Capabilities(
        server_side_copy=True,
        atomic_put=True,
        max_connections=8,
        multipart_threshold=MULTIPART_THRESHOLD,
        batch_copy=True,
    )

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        allow_http: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        if endpoint_url:
            endpoint_url = require_https(endpoint_url, "endpoint_url", allow_http=allow_http)
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = validate_prefix(prefix.strip("/"), "prefix")
        config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            max_pool_connections=16,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            connect_timeout=10,
            read_timeout=120,
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=4,
            max_io_queue=8,
        )

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> S3Backend:
        checked = check_args(
            args,
            cls.csh_id,
            required=("bucket",),
            optional=(
                "endpoint_url",
                "region",
                "prefix",
                "allow_http",
                *secret_arg_names("access_key_id", "secret_access_key"),
            ),
        )
        key_id = secret_from_args(checked, "access_key_id", required=False)
        secret = secret_from_args(checked, "secret_access_key", required=False)
        if bool(key_id) != bool(secret):
            raise ConfigError("secret_access_key", "give access_key_id and secret_access_key together, or neither")
        return cls(
            checked["bucket"],
            endpoint_url=checked.get("endpoint_url") or None,
            region=checked.get("region") or None,
            prefix=checked.get("prefix") or "",
            access_key_id=key_id.reveal() if key_id else None,
            secret_access_key=secret.reveal() if secret else None,
            allow_http=truthy_arg(checked, "allow_http"),
        )

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3 s3://{self.bucket}/{self.prefix}{where}"

    def close(self) -> None:
        self.client.close()

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- primitives -------------------------------------------------------------------------------------------

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        name = self._name(validate_key(key))
        with translate_boto_errors(key, "cannot upload"):
            self.client.upload_file(os.fspath(local_path), self.bucket, name, Config=self.transfer, Callback=progress)

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        name = self._name(validate_key(key))
        with translate_boto_errors(key, "cannot download"), atomic_local_file(local_path, fsync=fsync) as file:
            self.client.download_fileobj(self.bucket, name, file, Config=self.transfer, Callback=progress)

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(validate_key(key))
        with translate_boto_errors(key, "cannot stat"):
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        return ObjectInfo(key=key, size=int(head["ContentLength"]), mtime=head["LastModified"].timestamp())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return checked_listing(self._pages(prefix), self.describe())

    def _pages(self, prefix: str) -> Iterator[ObjectInfo]:
        start = self._name(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        with translate_boto_errors(prefix, "cannot list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"][strip:], size=int(item["Size"]), mtime=item["LastModified"].timestamp()
                    )

    def delete(self, key: str) -> None:
        name = self._name(validate_key(key))
        with translate_boto_errors(key, "cannot delete"):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    # -- extras -----------------------------------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if not prefix:
            super().delete_prefix(prefix)  # refuses the empty prefix
        batch: list[dict[str, str]] = []
        for info in self._pages(prefix):
            batch.append({"Key": self._name(info.key)})
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch, prefix)
                batch = []
        if batch:
            self._delete_batch(batch, prefix)

    def _delete_batch(self, batch: builtins.list[dict[str, str]], prefix: str) -> None:
        with translate_boto_errors(prefix, "cannot delete"):
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            fake = botocore.exceptions.ClientError({"Error": first}, "DeleteObjects")
            raise translate_client_error(fake, first.get("Key"), f"cannot delete ({len(errors)} failed), first")

    def copy(self, src: str, dst: str) -> None:
        source = {"Bucket": self.bucket, "Key": self._name(validate_key(src, "src"))}
        name = self._name(validate_key(dst, "dst"))
        with translate_boto_errors(src, "cannot copy"):
            self.client.copy(source, self.bucket, name, Config=self.transfer)

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        checked = validate_pairs(pairs)
        copy_on_threads(checked, self._copy_object, self.capabilities.max_connections, progress)

    def _copy_object(self, src: str, dst: str) -> None:
        """One ``CopyObject``; a source too large for it (S3: above 5 GiB) goes through the managed :meth:`copy`."""
        source = {"Bucket": self.bucket, "Key": self._name(src)}
        try:
            with translate_boto_errors(src, "cannot copy"):
                self.client.copy_object(CopySource=source, Bucket=self.bucket, Key=self._name(dst))
        except PermanentStorageError as exc:
            cause = exc.__cause__
            if not isinstance(cause, botocore.exceptions.ClientError):
                raise
            if cause.response.get("Error", {}).get("Code") not in _TOO_LARGE_TO_COPY:
                raise
            self.copy(src, dst)
