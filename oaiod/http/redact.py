"""Secrets never reach a log line or a message: masking of URLs, headers and JSON, and the copy-pasteable
``curl`` line of a request with every password, token, cookie and ``Authorization`` replaced by ``***``."""

from __future__ import annotations

import json as _json
import re
import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from oaiod.secrets import MASK, Secret

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|credential|signature|session|csrf|upload_?id", re.I)
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken"})


def is_secret_name(name: str) -> bool:
    """True for a field, header or parameter name that may carry a secret (password, token, key, cookie…)."""
    return name.lower() in SECRET_HEADERS or bool(_SECRET_NAME.search(name))


def mask_json(value: Any) -> Any:
    """A copy of JSON-like ``value`` with the values of secret-named keys replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_name(str(k)) else mask_json(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(v) for v in value]
    if isinstance(value, Secret):
        return MASK
    return value


def mask_url(url: str) -> str:
    """``url`` without a password in its user info and with secret-named query parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the values of secret headers masked."""
    return {k: (MASK if is_secret_name(k) else v) for k, v in headers.items()}


_NOT_SHOWN_HEADERS = frozenset({"content-length", "accept-encoding", "connection"})


def curl_command(prepared: requests.PreparedRequest) -> str:
    """A copy-pasteable ``curl`` command for a request, with every secret replaced by ``***``."""
    words = ["curl", "-sS"]
    if prepared.method not in ("GET", None):
        words += ["-X", prepared.method] if prepared.method != "HEAD" else ["-I"]
    words.append(mask_url(prepared.url or ""))
    for name, value in prepared.headers.items():
        if name.lower() not in _NOT_SHOWN_HEADERS:
            words += ["-H", f"{name}: {MASK if is_secret_name(name) else value}"]
    body = prepared.body
    if body is not None:
        words += _curl_body(body, prepared.headers.get("Content-Type", ""))
    return " ".join(shlex.quote(word) for word in words)


def _curl_body(body: Any, content_type: str) -> list[str]:
    """curl arguments showing a body: JSON and forms masked; anything else only by its size."""
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        if "json" in content_type:
            try:
                return ["--data-raw", _json.dumps(mask_json(_json.loads(text)), ensure_ascii=False)]
            except ValueError:
                pass
        if "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(text, keep_blank_values=True)
            return ["--data-raw", urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")]
        return ["--data-binary", f"@body-of-{len(body)}-bytes"]
    return ["--data-binary", "@streamed-body"]
