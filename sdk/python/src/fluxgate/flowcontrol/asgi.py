"""ASGI middleware (FastAPI, Starlette, any ASGI 3 app)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping

from fluxgate.flowcontrol.client import Client
from fluxgate.flowcontrol.decision import Decision
from fluxgate.flowcontrol.labels import http_labels
from fluxgate.flowcontrol.spans import Flow, SpanExporter

__all__ = ["FlowControlMiddleware", "scope_labels", "DEFAULT_CONTROL_POINT"]

log = logging.getLogger("fluxgate.flowcontrol")

DEFAULT_CONTROL_POINT = "ingress"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope_labels(scope: Scope) -> dict[str, str]:
    """The flow labels of an ASGI HTTP request (see labels.http_labels)."""
    raw = scope.get("raw_path")
    target = raw.decode("latin-1") if raw else scope.get("path", "/")
    qs = scope.get("query_string") or b""
    if qs:
        target += "?" + qs.decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers") or []]
    host = next((v for k, v in headers if k.lower() == "host"), "")
    if not host and scope.get("server"):
        h, p = scope["server"][0], scope["server"][1]
        host = f"{h}:{p}" if p else str(h)
    client = scope.get("client")
    return http_labels(scope.get("method", "GET"), target, host, scope.get("scheme", "http"), headers,
                       client[0] if client else None)


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class FlowControlMiddleware:
    """Checks every HTTP request with the agent before the app runs.

    A rejected request gets ``Decision.status_code`` (429 rate limited, 403
    not sampled, 503 otherwise or failed closed, or the component's
    ``denied_response_status_code``), the decision headers (X-FluxGate-*,
    Retry-After, RateLimit-*) and a JSON body
    ``{"error":"rate_limited","policy":"default/per-user-limit","retry_after_seconds":12}``.
    An admitted request reaches the app with the decision in
    ``scope["fluxgate.decision"]`` and its response carries the decision
    headers; after the response, the flow's end is reported (failed when
    the status is 5xx or the app raised) so adaptive concurrency frees its
    slot, and, with ``spans``, a span feeds the agent's flux meters.

    ``labels(scope)`` adds labels over scope_labels; ``tokens(scope)``
    gives the request's cost (default 1). Non-HTTP scopes pass untouched.
    With Starlette/FastAPI: ``app.add_middleware(FlowControlMiddleware, client=Client())``.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        control_point: str = DEFAULT_CONTROL_POINT,
        labels: Callable[[Scope], dict[str, str]] | None = None,
        tokens: Callable[[Scope], float] | None = None,
        spans: SpanExporter | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.control_point = control_point
        self.labels = labels
        self.tokens = tokens
        self.spans = spans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        labels = scope_labels(scope)
        if self.labels is not None:
            labels.update(self.labels(scope))
        cost = self.tokens(scope) if self.tokens is not None else None
        decision = await self.client.acheck(self.control_point, labels, cost)
        target = labels.get("http.target", "")
        method = scope.get("method", "")
        if not decision.accepted:
            await self._deny(send, decision)
            if self.spans is not None:
                t = time.time()
                self.spans.record(Flow(self.control_point, decision.flux_meter_names, False, decision.status_code, t, t, method, target))
            return

        scope["fluxgate.decision"] = decision
        status = 0
        extra = _encode(decision.headers())

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = dict(message)
                message["headers"] = list(message.get("headers") or []) + extra
            await send(message)

        start = time.time()
        returned = False
        try:
            await self.app(scope, receive, send_with_headers)
            returned = True
        finally:
            if status == 0:
                status = 200 if returned else 500
            await self.client.aend(decision, failed=status >= 500)
            if self.spans is not None:
                self.spans.record(Flow(self.control_point, decision.flux_meter_names, True, status, start, time.time(), method, target))

    @staticmethod
    async def _deny(send: Send, decision: Decision) -> None:
        body = (json.dumps(decision.body(), separators=(",", ":")) + "\n").encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": decision.status_code, "headers": headers + _encode(decision.headers())})
        await send({"type": "http.response.body", "body": body})
