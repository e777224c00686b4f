"""PrometheusListener: exact exposition text, sharing, isolation, close()."""

from __future__ import annotations

import threading

import pytest

from conftest import require

require("prometheus_client")

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest  # noqa: E402

from fluxgate import AsyncCircuitBreaker, CircuitBreaker, State  # noqa: E402
from fluxgate.listeners.prometheus import PrometheusListener  # noqa: E402
from fluxgate.permits import All  # noqa: E402
from fluxgate.retries import Cooldown  # noqa: E402
from fluxgate.trippers import FailureStreak  # noqa: E402

HEAD_STATE = (
    "# HELP circuit_breaker_state Whether the circuit breaker is in this state (1) or not (0).\n"
    "# TYPE circuit_breaker_state gauge\n"
)
HEAD_TRANS = (
    "# HELP circuit_breaker_state_transition_total State transitions of the circuit breaker.\n"
    "# TYPE circuit_breaker_state_transition_total counter\n"
)


def text(reg: CollectorRegistry) -> str:
    return generate_latest(reg).decode()


def trip(cb: CircuitBreaker) -> None:
    with pytest.raises(ConnectionError):
        cb.call(lambda: (_ for _ in ()).throw(ConnectionError()))


def make(clock, listener, name="payment_api") -> CircuitBreaker:
    return CircuitBreaker(name=name, tripper=FailureStreak(1), retry=Cooldown(duration=10), permit=All(),
                          max_half_open_calls=1, clock=clock, listeners=[listener])


def test_exact_text_through_a_cycle(clock):
    reg = CollectorRegistry()
    lis = PrometheusListener(name="payment_api", registry=reg)
    assert text(reg) == HEAD_STATE + HEAD_TRANS
    cb = make(clock, lis)
    assert text(reg) == HEAD_STATE + (
        'circuit_breaker_state{circuit_name="payment_api",state="closed"} 1.0\n'
        'circuit_breaker_state{circuit_name="payment_api",state="open"} 0.0\n'
        'circuit_breaker_state{circuit_name="payment_api",state="half_open"} 0.0\n'
    ) + HEAD_TRANS
    trip(cb)
    clock.advance(10)
    cb.call(lambda: None)  # half_open, then closed
    trip(cb)
    assert text(reg) == HEAD_STATE + (
        'circuit_breaker_state{circuit_name="payment_api",state="closed"} 0.0\n'
        'circuit_breaker_state{circuit_name="payment_api",state="open"} 1.0\n'
        'circuit_breaker_state{circuit_name="payment_api",state="half_open"} 0.0\n'
    ) + HEAD_TRANS + (
        'circuit_breaker_state_transition_total{circuit_name="payment_api",new_state="open",old_state="closed"} 2.0\n'
        'circuit_breaker_state_transition_total{circuit_name="payment_api",new_state="closed",old_state="half_open"} 1.0\n'
        'circuit_breaker_state_transition_total{circuit_name="payment_api",new_state="half_open",old_state="open"} 1.0\n'
    )
    assert "_created" not in text(reg)


def test_close_is_idempotent_scoped_and_recreated(clock):
    reg = CollectorRegistry()
    a = PrometheusListener(name="ephemeral", registry=reg)
    b = PrometheusListener(name="inventory_api", registry=reg)
    cba, cbb = make(clock, a, "ephemeral"), make(clock, b, "inventory_api")
    trip(cba)
    trip(cbb)
    a.close()
    a.close()
    out = text(reg)
    assert "ephemeral" not in out
    assert 'circuit_breaker_state{circuit_name="inventory_api",state="open"} 1.0' in out
    assert 'circuit_breaker_state_transition_total{circuit_name="inventory_api",new_state="open",old_state="closed"} 1.0' in out
    clock.advance(10)
    cba.call(lambda: None)
    out = text(reg)
    assert 'circuit_breaker_state{circuit_name="ephemeral",state="closed"} 1.0' in out
    assert 'circuit_breaker_state_transition_total{circuit_name="ephemeral",new_state="half_open",old_state="open"} 1.0' in out
    assert 'circuit_breaker_state_transition_total{circuit_name="ephemeral",new_state="open",old_state="closed"}' not in out


def test_default_registry_is_shared_and_isolated_registries_are_not(clock):
    reg = CollectorRegistry()
    make(clock, PrometheusListener(name="shared_one"), "shared_one")
    make(clock, PrometheusListener(name="shared_two"), "shared_two")
    make(clock, PrometheusListener(name="isolated", registry=reg), "isolated")
    default = generate_latest(REGISTRY).decode()
    assert default.count("# TYPE circuit_breaker_state gauge") == 1
    assert 'circuit_name="shared_one"' in default and 'circuit_name="shared_two"' in default
    assert 'circuit_name="isolated"' not in default
    assert 'circuit_name="shared_one"' not in text(reg)
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"circuit_name": "shared_two", "state": "closed"}) == 1.0


def test_name_clash_in_a_registry_is_an_error():
    from prometheus_client import Gauge

    reg = CollectorRegistry()
    Gauge("circuit_breaker_state", "someone else's", registry=reg)
    with pytest.raises(ValueError):
        PrometheusListener(name="x", registry=reg)


def test_threads_keep_gauge_consistent(clock):
    """Many threads flipping one breaker: the gauge always ends equal to the state
    and the counters add up to the signals."""
    reg = CollectorRegistry()
    lis = PrometheusListener(name="t", registry=reg)
    seen = []
    cb = CircuitBreaker(name="t", tripper=FailureStreak(1), retry=Cooldown(duration=0), permit=All(),
                        max_half_open_calls=2, listeners=[lis, seen.append])

    def work(i):
        for j in range(300):
            try:
                if (i + j) % 3 == 0:
                    cb.call(lambda: 1 / 0)
                else:
                    cb.call(lambda: None)
            except Exception:
                pass

    ths = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    for s in State:
        assert reg.get_sample_value("circuit_breaker_state", {"circuit_name": "t", "state": s.value}) == (1.0 if s is cb.state else 0.0)
    total = sum(reg.get_sample_value("circuit_breaker_state_transition_total",
                                     {"circuit_name": "t", "old_state": a.value, "new_state": b.value}) or 0
                for a in State for b in State)
    assert total == len(seen) > 0


async def test_async_breaker_with_listener(clock):
    reg = CollectorRegistry()
    lis = PrometheusListener(name="async_api", registry=reg)
    cb = AsyncCircuitBreaker(name="async_api", tripper=FailureStreak(1), clock=clock, listeners=[lis])

    @cb
    async def down():
        raise ConnectionError()

    with pytest.raises(ConnectionError):
        await down()
    assert reg.get_sample_value("circuit_breaker_state", {"circuit_name": "async_api", "state": "open"}) == 1.0
