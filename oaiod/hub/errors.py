"""The hub's answers to a client mistake or a refused request, each with its HTTP status and JSON error code.

::

    OaiodError
    └── HubError                status, code, reason → JSON {"error", "reason", ...}
        ├── BadRequest          400 bad_request (oaiod.errors.ValidationError maps to 400 validation + field)
        ├── NotAuthenticated    401 not_authenticated
        ├── CsrfFailed          403 csrf
        ├── Forbidden           403 forbidden
        ├── NotFound            404 not_found
        ├── Conflict            409 conflict (may carry the stored object)
        ├── Gone                410 gone
        ├── TooLarge            413 too_large
        ├── UnsupportedMedia    415 unsupported_media_type
        ├── RangeNotSatisfiable 416 range_not_satisfiable (carries the object's size, for Content-Range)
        ├── RateLimited         429 rate_limited (carries retry_after seconds)
        ├── InsufficientStorage 507 insufficient_storage (the blob store's disk is full)
        └── StoreUnavailable    503 store_unavailable (the blob store's bucket did not answer; retry later)

:mod:`oaiod.hub.service` raises them; :mod:`oaiod.hub.app` turns them into answers. Nothing here knows HTTP
frameworks, so the CLI can catch the same errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from oaiod.errors import OaiodError


class HubError(OaiodError):
    """A request the hub refuses; ``extra`` goes into the JSON body next to ``error`` and ``reason``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": self.code, "reason": self.reason, **self.extra}


class BadRequest(HubError):
    status, code = 400, "bad_request"


class NotAuthenticated(HubError):
    status, code = 401, "not_authenticated"


class CsrfFailed(HubError):
    status, code = 403, "csrf"


class Forbidden(HubError):
    status, code = 403, "forbidden"


class NotFound(HubError):
    status, code = 404, "not_found"


class Conflict(HubError):
    status, code = 409, "conflict"


class Gone(HubError):
    status, code = 410, "gone"


class TooLarge(HubError):
    status, code = 413, "too_large"


class UnsupportedMedia(HubError):
    status, code = 415, "unsupported_media_type"


class RangeNotSatisfiable(HubError):
    status, code = 416, "range_not_satisfiable"

    def __init__(self, reason: str, size: int) -> None:
        super().__init__(reason, size=size)
        self.size = size


class RateLimited(HubError):
    status, code = 429, "rate_limited"

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class InsufficientStorage(HubError):
    status, code = 507, "insufficient_storage"


class StoreUnavailable(HubError):
    """The blob store's bucket failed or refused the hub: not the client's mistake, and it may pass."""

    status, code = 503, "store_unavailable"
