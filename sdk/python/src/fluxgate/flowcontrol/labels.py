"""Flow labels of HTTP requests, with the keys the agent's HTTP adapters
and the Go SDK use (controlpoint/http.go)."""

from __future__ import annotations

import urllib.parse
from typing import Iterable

__all__ = [
    "LABEL_HTTP_METHOD",
    "LABEL_HTTP_TARGET",
    "LABEL_HTTP_HOST",
    "LABEL_HTTP_SCHEME",
    "LABEL_SOURCE_ADDRESS",
    "LABEL_HEADER_PREFIX",
    "header_label",
    "http_labels",
]

LABEL_HTTP_METHOD = "http.method"
LABEL_HTTP_TARGET = "http.target"
LABEL_HTTP_HOST = "http.host"
LABEL_HTTP_SCHEME = "http.scheme"
LABEL_SOURCE_ADDRESS = "source.address"
LABEL_HEADER_PREFIX = "http.request.header."


def header_label(name: str) -> str:
    """The label key of a header: http.request.header.<lower case, - → _>."""
    return LABEL_HEADER_PREFIX + name.lower().replace("-", "_")


def _baggage(value: str, labels: dict[str, str]) -> None:
    for member in value.split(","):
        member = member.split(";", 1)[0]
        k, sep, v = member.partition("=")
        k = k.strip()
        if not sep or not k or k in labels:
            continue
        labels[k] = urllib.parse.unquote(v.strip())


def http_labels(
    method: str,
    target: str,
    host: str,
    scheme: str,
    headers: Iterable[tuple[str, str]],
    source_address: str | None = None,
) -> dict[str, str]:
    """The labels of one HTTP request: every header (repeated ones joined
    with ","), the entries of a W3C baggage header (not overriding other
    labels), method, target (path and query), host, scheme and the client
    address."""
    labels: dict[str, str] = {}
    for name, value in headers:
        k = header_label(name)
        labels[k] = labels[k] + "," + value if k in labels else value
    b = labels.get(header_label("baggage"))
    if b is not None:
        _baggage(b, labels)
    labels[LABEL_HTTP_METHOD] = method
    labels[LABEL_HTTP_TARGET] = target
    labels[LABEL_HTTP_HOST] = host
    labels[LABEL_HTTP_SCHEME] = scheme
    if source_address:
        labels[LABEL_SOURCE_ADDRESS] = source_address
    return labels
