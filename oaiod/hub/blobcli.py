"""The blob store's command-line options (``--blob-store``, ``--s3-…``), shared by ``hub serve`` and ``hub migrate``.

No credential is an option: a command line is visible to every local user (``ps``). The S3 store reads boto3's
standard chain (environment, ``~/.aws``, an instance role) or ``--s3-credentials-file`` (mode 0600).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from oaiod.hub.settings import BlobStoreSettings

_S3_OPTIONS = (
    "s3_bucket",
    "s3_endpoint",
    "s3_region",
    "s3_prefix",
    "s3_credentials_file",
    "s3_direct",
    "s3_public_endpoint",
    "s3_allow_http",
)


def blob_store_options(prefix: str = "", envvar_prefix: str = "OAIOD_HUB_") -> Callable[..., Any]:
    """Click options that become one ``blob_store: BlobStoreSettings`` argument; with a ``prefix`` (``to-`` for
    ``hub migrate --to-blob-store …``, where they describe the target) they are ``--to-s3-…``, read no
    environment variable, and become ``to_blob_store`` (None unless ``--to-blob-store`` is given)."""
    option = f"--{prefix}" if prefix else "--"
    kind_option = f"--{prefix}blob-store" if prefix else "--blob-store"
    var = prefix.replace("-", "_")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kind = kwargs.pop(f"{var}blob_store_kind")
            values = {name: kwargs.pop(f"{var}{name}") for name in _S3_OPTIONS}
            kwargs[f"{var}blob_store"] = BlobStoreSettings(kind=kind, **values) if kind else None
            return func(*args, **kwargs)

        env = (lambda name: f"{envvar_prefix}{name}") if not prefix else (lambda _name: None)
        options = [
            click.option(kind_option, f"{var}blob_store_kind", type=click.Choice(["local", "s3"]),
                         default=None if prefix else "local", envvar=env("BLOB_STORE"),
                         help="Where blob contents live: the data folder, or an S3-compatible bucket."),
            click.option(f"{option}s3-bucket", f"{var}s3_bucket", default="", envvar=env("S3_BUCKET"),
                         help="S3 bucket."),
            click.option(f"{option}s3-endpoint", f"{var}s3_endpoint", default="", envvar=env("S3_ENDPOINT"),
                         help="S3 endpoint URL (MinIO, Ceph…); default: AWS."),
            click.option(f"{option}s3-region", f"{var}s3_region", default="", envvar=env("S3_REGION"),
                         help="S3 region."),
            click.option(f"{option}s3-prefix", f"{var}s3_prefix", default="", envvar=env("S3_PREFIX"),
                         help="Key prefix inside the bucket."),
            click.option(f"{option}s3-credentials-file", f"{var}s3_credentials_file", default=None,
                         type=click.Path(dir_okay=False, path_type=Path), envvar=env("S3_CREDENTIALS_FILE"),
                         help="AWS credentials file ([default] aws_access_key_id, aws_secret_access_key; mode 600). "
                         "Default: boto3's chain (AWS_* environment, ~/.aws, instance role)."),
            click.option(f"{option}s3-direct", f"{var}s3_direct", is_flag=True, envvar=env("S3_DIRECT"),
                         help="Hand clients pre-signed URLs: contents bypass the hub (clients must reach the bucket)."),
            click.option(f"{option}s3-public-endpoint", f"{var}s3_public_endpoint", default="",
                         envvar=env("S3_PUBLIC_ENDPOINT"),
                         help="The bucket's endpoint as clients reach it, for pre-signed URLs "
                         "(default: --s3-endpoint)."),
            click.option(f"{option}s3-allow-http", f"{var}s3_allow_http", is_flag=True, envvar=env("S3_ALLOW_HTTP"),
                         help="Allow a plain-http endpoint on another machine."),
        ]  # fmt: skip
        for add in reversed(options):
            wrapper = add(wrapper)
        return wrapper

    return decorate
