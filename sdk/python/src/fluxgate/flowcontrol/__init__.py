"""Client of the FluxGate agent's flow-control API, with ASGI and WSGI
middleware.

    from fluxgate.flowcontrol import Client

    client = Client("http://127.0.0.1:8080")           # fail open, 100 ms
    decision = client.check("ingress", labels={"user": "alice"})
    if decision.accepted:
        try:
            ...                                          # do the work
        finally:
            client.end(decision, failed=False)           # frees an adaptive_concurrency slot
    else:
        retry_in = decision.retry_after

Only the standard library. ``FlowControlMiddleware`` (ASGI) and
``FlowControlWSGIMiddleware`` check every request; ``SpanExporter`` feeds
the agent's flux meters with OTLP/HTTP JSON spans.
"""

from fluxgate.flowcontrol.asgi import DEFAULT_CONTROL_POINT, FlowControlMiddleware, scope_labels
from fluxgate.flowcontrol.client import DEFAULT_ADDRESS, DEFAULT_TIMEOUT, Client, FailureMode
from fluxgate.flowcontrol.decision import Decision, RateLimit
from fluxgate.flowcontrol.labels import header_label, http_labels
from fluxgate.flowcontrol.spans import Flow, SpanExporter
from fluxgate.flowcontrol.wsgi import FlowControlWSGIMiddleware, environ_labels

__all__ = [
    "Client",
    "DEFAULT_ADDRESS",
    "DEFAULT_CONTROL_POINT",
    "DEFAULT_TIMEOUT",
    "Decision",
    "FailureMode",
    "Flow",
    "FlowControlMiddleware",
    "FlowControlWSGIMiddleware",
    "RateLimit",
    "SpanExporter",
    "environ_labels",
    "header_label",
    "http_labels",
    "scope_labels",
]
