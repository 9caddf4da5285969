"""One HTTP layer for every remote: the oaio server (hub) and the HTTP APIs of the storage hosts.

Built on a ``requests.Session``. Each call gets a (connect, read) timeout; idempotent calls are retried with
exponential backoff and full jitter on transient failures, honouring ``Retry-After``; a call that fails
because the session or token expired logs in again once and is repeated once (the seeds' "refresh if
necessary"); one :class:`AuthPlugin` may be shared by the clients of one server. Every request is logged at
DEBUG (logger ``oaiod.http``) as a copy-pasteable ``curl`` line with passwords, tokens, cookies and
``Authorization`` masked, and timed in :attr:`HttpClient.timings`.

One module per idea: :mod:`~oaiod.http.client` (the client, timings, retry policy), :mod:`~oaiod.http.auth`
(auth plugins), :mod:`~oaiod.http.errors` (the tree below, and the translation of answers and ``requests``
failures into it), :mod:`~oaiod.http.redact` (masking secrets; curl lines), :mod:`~oaiod.http.urls` (base URLs,
the HTTPS rule). Import from ``oaiod.http``; the submodules are an internal layout.

Exceptions (nothing returns an error string; ``err.kind`` is the :class:`~oaiod.errors.FailureKind`, and
``err.transient`` — kind ``transient`` — says whether a retry may help)::

    OaiodError
    └── RemoteError                 anything from an HTTP peer                          kind
        ├── TransportError          connection refused or reset, DNS, TLS: no answer   transient
        │   └── RequestTimeout      no connection or no answer within the timeout      transient
        ├── ProtocolError           an answer that breaks the protocol (not JSON, …)   invalid
        └── HTTPStatusError         a non-2xx answer: .status .body .method .url (secrets masked)
            ├── AuthError           401, or a failed login                             auth
            ├── PermissionDenied    403                                                permission
            ├── NotFound            404                                                not_found
            ├── Conflict            409; .body holds the server's object               conflict
            ├── Gone                410                                                not_found
            ├── PayloadTooLarge     413                                                quota
            ├── RateLimited         429; .retry_after in seconds (or None)             transient
            ├── ClientError         any other 4xx                                      invalid
            └── ServerError         5xx                                                transient
"""

from oaiod.http.auth import (
    AuthPlugin,
    BasicAuth,
    BearerTokenAuth,
    OaioSessionAuth,
)
from oaiod.http.client import (
    DEFAULT_TIMEOUT,
    IDEMPOTENT_METHODS,
    NO_RETRY,
    SAFE_METHODS,
    USER_AGENT,
    Body,
    HttpClient,
    RetryPolicy,
    Timing,
    iter_bytes,
    json_of,
)
from oaiod.http.errors import (
    MAX_ERROR_BODY,
    SHOWN_BODY_CHARS,
    AuthError,
    ClientError,
    Conflict,
    Gone,
    HTTPStatusError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RemoteError,
    RequestTimeout,
    ServerError,
    TransportError,
    error_class,
    error_for_response,
    parse_retry_after,
    translate_exception,
)
from oaiod.http.redact import (
    SECRET_HEADERS,
    curl_command,
    is_secret_name,
    mask_headers,
    mask_json,
    mask_url,
)
from oaiod.http.urls import (
    check_url_security,
    is_loopback,
    server_base_url,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT_METHODS",
    "MAX_ERROR_BODY",
    "NO_RETRY",
    "SAFE_METHODS",
    "SECRET_HEADERS",
    "SHOWN_BODY_CHARS",
    "USER_AGENT",
    "AuthError",
    "AuthPlugin",
    "BasicAuth",
    "BearerTokenAuth",
    "Body",
    "ClientError",
    "Conflict",
    "Gone",
    "HTTPStatusError",
    "HttpClient",
    "NotFound",
    "OaioSessionAuth",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "Timing",
    "TransportError",
    "check_url_security",
    "curl_command",
    "error_class",
    "error_for_response",
    "is_loopback",
    "is_secret_name",
    "iter_bytes",
    "json_of",
    "mask_headers",
    "mask_json",
    "mask_url",
    "parse_retry_after",
    "server_base_url",
    "translate_exception",
]
