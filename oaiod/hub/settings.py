"""What an operator can set on a hub; every other module reads these, none reads the environment itself."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8765
DB_FILE_NAME = "hub.sqlite3"


@dataclass(frozen=True)
class BlobStoreSettings:
    """Where the blob store keeps content (:mod:`oaiod.hub.blobcontent`): ``local`` (the data folder) or ``s3``.

    No credentials here: an S3 store reads them from boto3's standard chain or from ``s3_credentials_file``."""

    kind: str = "local"
    s3_bucket: str = ""
    s3_endpoint: str = ""  #: empty: AWS
    s3_region: str = ""
    s3_prefix: str = ""  #: objects go under ``<prefix>/sha256/``
    s3_credentials_file: Path | None = None  #: an AWS credentials file, mode 0600
    #: hand clients pre-signed URLs so contents bypass the hub (the bucket must be reachable by them)
    s3_direct: bool = False
    s3_public_endpoint: str = ""  #: the bucket's address as clients reach it (default: ``s3_endpoint``)
    s3_allow_http: bool = False  #: plain http to a non-loopback endpoint


@dataclass(frozen=True)
class HubSettings:
    """One hub's configuration; ``db_url`` defaults to SQLite at ``<data_dir>/hub.sqlite3``."""

    data_dir: Path
    db_url: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  #: 0 picks a free port
    session_lifetime: float = 14 * 24 * 3600.0  #: seconds a login stays valid (Django's default)
    body_limit: int = 32 * 1024 * 1024  #: largest request body in bytes; more answers 413
    long_poll_max: float = 60.0  #: longest wait of ``hub/changes/`` in seconds
    long_poll_default: float = 30.0
    #: ``hub/changes/`` polls one user may have waiting at once; more answer 429. A device's daemon waits in one, a
    #: device that vanished without closing its connection holds one up to ``long_poll_max``: 16 leaves a person's
    #: devices room, and bounds the sockets and memory one account can tie up
    feed_waiters_per_user: int = 16
    tombstone_days: float = 90.0  #: how long ``hub/deleted/`` remembers removals
    max_future_seconds: float = 3600.0  #: how far ahead of the hub clock a posted ``client_stamp`` may be
    #: failed logins within ``login_window`` (seconds) before a lockout (oaiod.hub.loginguard): of one name from one
    #: address or one known device; from one address, any name; of one name, any address (clients without a device
    #: token only). Each lockout of a key lasts twice the last, from ``login_window`` up to ``login_lockout_max``
    login_max_failures: int = 10
    login_address_max_failures: int = 50
    login_name_max_failures: int = 100
    login_window: float = 60.0
    login_lockout_max: float = 3600.0
    graceful_shutdown: float = 5.0  #: seconds ``stop()`` lets running requests finish
    #: the base URL clients reach the hub at (``https://hub.example/api/``), answered by ``csh_args/Hub``;
    #: empty: the URL of each request (right unless a proxy rewrites the host)
    public_url: str = ""
    #: addresses or networks of reverse proxies whose ``X-Forwarded-For``/``-Proto`` count (see oaiod.hub.proxy);
    #: empty: forwarded headers are ignored from everyone, loopback included
    trusted_proxies: tuple[str, ...] = ()
    #: a bearer token that lets a scraper on another machine read ``/metrics`` (oaiod.hub.metrics); empty: loopback
    #: only. Not in ``repr``: settings may be logged
    metrics_token: str = field(default="", repr=False)
    blob_store: BlobStoreSettings = field(default_factory=BlobStoreSettings)
    #: folder zip archives (oaiod.hub.archives): bytes all archives kept at once may take under ``<data_dir>/archives``
    #: (a request beyond it is refused: 413 alone, 429 while others take the room), seconds one may take to build,
    #: seconds a prepared one is kept, and builds one hub process runs at once (the others queue)
    archive_disk_limit: int = 4 * 1024**3
    archive_time_limit: float = 900.0
    archive_ttl: float = 3600.0
    archive_builders: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL actually used."""
        return self.db_url or f"sqlite:///{self.data_dir / DB_FILE_NAME}"

    def replace(self, **changes: object) -> HubSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
