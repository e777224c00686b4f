"""Every example of seed 004 (PrometheusListener documentation), as written,
with the `...` arguments made concrete. Port 8000 becomes a free port so the
test can run next to anything else; README.md shows them with 8000."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from conftest import require

require("prometheus_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_basic_setup():
    from prometheus_client import start_http_server
    from fluxgate import CircuitBreaker
    from fluxgate.listeners.prometheus import PrometheusListener

    port = free_port()
    start_http_server(port, addr="127.0.0.1")

    cb = CircuitBreaker(
        name="payment_api",
        listeners=[PrometheusListener(name="payment_api")],
    )

    @cb
    def charge(amount: float) -> float:
        return amount

    assert charge(9.99) == 9.99
    assert 'circuit_breaker_state{circuit_name="payment_api",state="closed"} 1.0' in scrape(port)


def test_fastapi_integration():
    require("fastapi")
    require("httpx")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client import make_asgi_app
    from fluxgate import AsyncCircuitBreaker
    from fluxgate.listeners.prometheus import PrometheusListener
    from fluxgate.trippers import FailureStreak

    metrics_app = make_asgi_app()

    app = FastAPI()
    app.mount("/metrics", metrics_app)

    cb = AsyncCircuitBreaker(
        name="api_gateway",
        tripper=FailureStreak(3),
        listeners=[PrometheusListener(name="api_gateway")],
    )

    @app.get("/")
    @cb
    async def root():
        return {"message": "Hello World"}

    client = TestClient(app)
    r = client.get("/")
    assert r.status_code == 200 and r.json() == {"message": "Hello World"}
    m = client.get("/metrics/")
    assert m.status_code == 200
    assert 'circuit_breaker_state{circuit_name="api_gateway",state="closed"} 1.0' in m.text


def test_multiple_circuit_breakers():
    from prometheus_client import start_http_server
    from fluxgate import CircuitBreaker
    from fluxgate.listeners.prometheus import PrometheusListener
    from fluxgate.trippers import FailureStreak

    port = free_port()
    start_http_server(port, addr="127.0.0.1")

    payment_cb = CircuitBreaker(
        name="payment_api",
        tripper=FailureStreak(1),
        listeners=[PrometheusListener(name="payment_api")],
    )
    inventory_cb = CircuitBreaker(
        name="inventory_api",
        listeners=[PrometheusListener(name="inventory_api")],
    )
    with pytest.raises(ConnectionError):
        with payment_cb:
            raise ConnectionError("payment provider down")
    with inventory_cb:
        pass
    out = scrape(port)
    assert 'circuit_breaker_state{circuit_name="payment_api",state="open"} 1.0' in out
    assert 'circuit_breaker_state{circuit_name="inventory_api",state="closed"} 1.0' in out
    assert out.count("# TYPE circuit_breaker_state gauge") == 1


def test_custom_registry():
    from prometheus_client import CollectorRegistry, generate_latest
    from fluxgate import CircuitBreaker
    from fluxgate.listeners.prometheus import PrometheusListener
    from fluxgate.windows import CountWindow

    custom_registry = CollectorRegistry()
    cb = CircuitBreaker(
        name="api",
        window=CountWindow(size=50),
        listeners=[PrometheusListener(name="api", registry=custom_registry)],
    )
    assert cb.call(lambda: "ok") == "ok"
    assert b'circuit_breaker_state{circuit_name="api",state="closed"} 1.0' in generate_latest(custom_registry)


def test_cleanup():
    from prometheus_client import REGISTRY, generate_latest
    from fluxgate import CircuitBreaker
    from fluxgate.listeners.prometheus import PrometheusListener
    from fluxgate.trippers import FailureStreak

    listener = PrometheusListener(name="ephemeral")
    cb = CircuitBreaker(name="ephemeral", tripper=FailureStreak(1), listeners=[listener])

    with pytest.raises(TimeoutError):
        cb.call(lambda: (_ for _ in ()).throw(TimeoutError()))
    assert b'circuit_name="ephemeral"' in generate_latest(REGISTRY)

    listener.close()  # remove every "circuit_name=ephemeral" series
    assert b'circuit_name="ephemeral"' not in generate_latest(REGISTRY)
    listener.close()


def test_custom_metrics():
    from prometheus_client import Counter, REGISTRY
    from fluxgate import CircuitBreaker
    from fluxgate.listeners import Listener
    from fluxgate.signal import Signal
    from fluxgate.state import State  # noqa: F401  (imported as in the seed)
    from fluxgate.trippers import FailureStreak

    OPEN_TRANSITIONS = Counter(
        'circuit_breaker_open_total',
        'Total number of times a circuit breaker has opened',
        ['circuit_name']
    )

    class CustomPrometheusListener(Listener):
        def __init__(self, name: str) -> None:
            self._name = name

        def __call__(self, signal: Signal) -> None:
            if signal.new_state == "open":
                OPEN_TRANSITIONS.labels(circuit_name=self._name).inc()

    cb = CircuitBreaker(name="orders", tripper=FailureStreak(1), listeners=[CustomPrometheusListener("orders")])
    with pytest.raises(ConnectionError):
        with cb:
            raise ConnectionError()
    assert REGISTRY.get_sample_value("circuit_breaker_open_total", {"circuit_name": "orders"}) == 1.0
