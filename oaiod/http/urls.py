"""Base URLs and the HTTPS rule: plain ``http://`` only to a loopback host, unless the user allows it."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from oaiod.errors import ConfigError
from oaiod.http.redact import mask_url


def is_loopback(hostname: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if not hostname:
        return False
    if hostname.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url_security(url: str, *, allow_insecure: bool = False, key: str = "url") -> None:
    """Refuse a URL that is not http(s), carries credentials, or is plain http to a host that is not loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"{mask_url(url)!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(key, "a URL must not carry credentials; give username and password_env/password_file")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure:
        raise ConfigError(
            key,
            f"refusing plain http to {parts.hostname}: passwords and data would cross the network unencrypted; "
            "use https:// (or set allow_insecure only on a trusted network)",
        )


def server_base_url(host_or_url: str, *, allow_insecure: bool = False) -> str:
    """The oaio API base URL for a host (``HOST[:PORT]``) or an explicit URL, always ending with ``/``.

    A bare host gets ``http://HOST/api/`` when it is loopback, else ``https://HOST/api/`` (the spec's rule,
    checked on the parsed host name rather than a string prefix). An explicit URL with no path gets ``/api/``;
    plain ``http://`` to a host that is not loopback is refused unless ``allow_insecure``.
    """
    value = host_or_url.strip()
    if not value:
        raise ConfigError("server", "no server host or URL given")
    if "://" not in value:
        hostname = urlsplit("//" + value).hostname
        value = f"{'http' if is_loopback(hostname) else 'https'}://{value.strip('/')}/api/"
    parts = urlsplit(value)
    check_url_security(value, allow_insecure=allow_insecure, key="server")
    path = parts.path if parts.path not in ("", "/") else "/api/"
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))
