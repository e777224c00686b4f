"""WSGI middleware (Flask, Django, any WSGI app)."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any, Callable, Iterable, Iterator

from fluxgate.flowcontrol.asgi import DEFAULT_CONTROL_POINT
from fluxgate.flowcontrol.client import Client
from fluxgate.flowcontrol.decision import Decision
from fluxgate.flowcontrol.labels import http_labels
from fluxgate.flowcontrol.spans import Flow, SpanExporter

__all__ = ["FlowControlWSGIMiddleware", "environ_labels"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_REASONS = {403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}


def environ_labels(environ: Environ) -> dict[str, str]:
    """The flow labels of a WSGI request (see labels.http_labels)."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target = urllib.parse.quote(path.encode("latin-1")) or "/"
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    headers = []
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            headers.append((k[5:].replace("_", "-"), str(v)))
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v:
            headers.append((k.replace("_", "-"), str(v)))
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return http_labels(environ.get("REQUEST_METHOD", "GET"), target, host, environ.get("wsgi.url_scheme", "http"),
                       headers, environ.get("REMOTE_ADDR") or None)


class FlowControlWSGIMiddleware:
    """The WSGI counterpart of FlowControlMiddleware: the same checks,
    answers, headers, flow-end reports (when the server closes the response
    iterable) and spans. The decision is in ``environ["fluxgate.decision"]``.
    Flask: ``app.wsgi_app = FlowControlWSGIMiddleware(app.wsgi_app, client=Client())``."""

    def __init__(
        self,
        app: WSGIApp,
        client: Client,
        control_point: str = DEFAULT_CONTROL_POINT,
        labels: Callable[[Environ], dict[str, str]] | None = None,
        tokens: Callable[[Environ], float] | None = None,
        spans: SpanExporter | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.control_point = control_point
        self.labels = labels
        self.tokens = tokens
        self.spans = spans

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        labels = environ_labels(environ)
        if self.labels is not None:
            labels.update(self.labels(environ))
        decision = self.client.check(self.control_point, labels, self.tokens(environ) if self.tokens else None)
        method, target = environ.get("REQUEST_METHOD", ""), labels.get("http.target", "")
        if not decision.accepted:
            body = (json.dumps(decision.body(), separators=(",", ":")) + "\n").encode()
            code = decision.status_code
            start_response(f"{code} {_REASONS.get(code, 'Rejected')}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + decision.headers())
            if self.spans is not None:
                t = time.time()
                self.spans.record(Flow(self.control_point, decision.flux_meter_names, False, code, t, t, method, target))
            return [body]
        environ["fluxgate.decision"] = decision
        status = [0]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line.split(" ", 1)[0])
            return start_response(status_line, list(headers) + decision.headers(), exc_info)

        t0 = time.time()
        try:
            result = self.app(environ, start)
        except BaseException:
            self._end(decision, 500, t0, method, target)
            raise
        return _Closing(result, lambda failed: self._end(decision, status[0] or (500 if failed else 200), t0, method, target))

    def _end(self, decision: Decision, status: int, t0: float, method: str, target: str) -> None:
        self.client.end(decision, failed=status >= 500)
        if self.spans is not None:
            self.spans.record(Flow(self.control_point, decision.flux_meter_names, True, status, t0, time.time(), method, target))


class _Closing:
    """A response iterable that reports the flow's end once, when the server
    closes it (PEP 3333) or iteration raises."""

    def __init__(self, result: Iterable[bytes], done: Callable[[bool], None]) -> None:
        self._result = result
        self._done = done
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException:
            self._finish(True)
            raise

    def _finish(self, failed: bool) -> None:
        if not self._ended:
            self._ended = True
            self._done(failed)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(False)
