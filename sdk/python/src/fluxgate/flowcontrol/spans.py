"""SpanExporter: flows as OTLP/HTTP JSON spans to the agent's OTLP port, so
its flux meters see each request's decision, status and duration.

Only the standard library: spans are queued (bounded; a full queue drops
and counts), and a daemon thread posts them in batches to
``POST /v1/traces`` with ``Content-Type: application/json``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Flow", "SpanExporter"]

log = logging.getLogger("fluxgate.flowcontrol")


@dataclass(frozen=True, slots=True)
class Flow:
    """One finished flow, as a flux meter reads it."""

    control_point: str
    flux_meters: Sequence[str]
    accepted: bool
    status_code: int
    start: float  # time.time() seconds
    end: float
    method: str = ""
    target: str = ""


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, (list, tuple)):
        v = {"arrayValue": {"values": [{"stringValue": str(x)} for x in value]}}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def span_json(f: Flow) -> dict[str, Any]:
    """The OTLP JSON span of a flow, with the attributes the agent's flux
    meters read (README, Flux Meters)."""
    attrs = [
        _attr("fluxgate.control_point", f.control_point),
        _attr("fluxgate.decision_type", "DECISION_TYPE_ACCEPTED" if f.accepted else "DECISION_TYPE_REJECTED"),
        _attr("http.response.status_code", int(f.status_code)),
        _attr("workload_duration_ms", max(f.end - f.start, 0.0) * 1000.0),
    ]
    if f.flux_meters:
        attrs.append(_attr("fluxgate.flux_meters", list(f.flux_meters)))
    if f.method:
        attrs.append(_attr("http.method", f.method))
    if f.target:
        attrs.append(_attr("http.target", f.target))
    return {
        "traceId": os.urandom(16).hex(),
        "spanId": os.urandom(8).hex(),
        "name": f"{f.method} {f.control_point}".strip(),
        "kind": 2,  # SPAN_KIND_SERVER
        "startTimeUnixNano": str(int(f.start * 1e9)),
        "endTimeUnixNano": str(int(f.end * 1e9)),
        "attributes": attrs,
    }


class SpanExporter:
    """Batches flows and posts them as OTLP/HTTP JSON to ``endpoint``
    (default ``http://127.0.0.1:4318/v1/traces``; ``token`` is the agent's
    ``otlp.token``). At most ``max_queue`` spans wait (default 2048); more
    are dropped and counted in ``dropped``. ``ssl_context`` is for an
    ``https://`` endpoint, as for ``Client``. Safe for use from many threads.
    ``flush()`` sends what is queued; ``close()`` flushes and stops."""

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:4318/v1/traces",
        token: str | None = None,
        service_name: str = "fluxgate-python",
        max_queue: int = 2048,
        batch_size: int = 512,
        interval: float = 1.0,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._ssl = ssl_context
        self.service_name = service_name
        self.batch_size = batch_size
        self.interval = interval
        self.timeout = timeout
        self.dropped = 0  # guarded by _cond
        self.sent = 0  # guarded by _cond
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._queue: deque[Flow] = deque()
        self._max = max_queue
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fluxgate-spans", daemon=True)
        self._thread.start()

    def record(self, flow: Flow) -> None:
        with self._cond:
            if self._closed or len(self._queue) >= self._max:
                self.dropped += 1
                return
            self._queue.append(flow)
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    def _take(self) -> list[Flow]:
        with self._cond:
            n = min(len(self._queue), self.batch_size)
            return [self._queue.popleft() for _ in range(n)]

    def _send(self, batch: list[Flow]) -> None:
        body = {
            "resourceSpans": [{
                "resource": {"attributes": [_attr("service.name", self.service_name)]},
                "scopeSpans": [{"scope": {"name": "fluxgate.flowcontrol"}, "spans": [span_json(f) for f in batch]}],
            }]
        }
        req = urllib.request.Request(self.endpoint, data=json.dumps(body).encode(), headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as r:
                r.read()
            with self._cond:
                self.sent += len(batch)
        except Exception as e:
            with self._cond:
                self.dropped += len(batch)
            log.warning("fluxgate: exporting %d spans to %s failed: %s", len(batch), self.endpoint, e)

    def flush(self) -> None:
        """Send every queued span now (in the caller's thread)."""
        with self._send_lock:
            while batch := self._take():
                self._send(batch)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._queue) < self.batch_size:
                    self._cond.wait(self.interval)
                closed = self._closed
            self.flush()
            if closed:
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(self.timeout + 1)
        self.flush()


def now() -> float:
    return time.time()
