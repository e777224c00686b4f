"""PrometheusListener: breaker state and transitions as Prometheus metrics.

Exports exactly::

    circuit_breaker_state{circuit_name, state}                              gauge: 1 current state, 0 the others
    circuit_breaker_state_transition_total{circuit_name, old_state, new_state} counter

the same names, labels and meaning as the Go breaker
(``controlpoint/breaker``). Listeners without a registry share one
module-level pair of metrics on ``prometheus_client.REGISTRY``; listeners
given the same ``CollectorRegistry`` share that registry's pair. Safe for
use from many threads and from asyncio.

Requires ``prometheus-client`` (``pip install fluxgate[prometheus]``).
"""

from __future__ import annotations

import threading
import weakref
from typing import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fluxgate.listeners import Listener
from fluxgate.signal import Signal
from fluxgate.state import State

__all__ = ["PrometheusListener", "STATE_METRIC", "TRANSITION_METRIC"]

STATE_METRIC = "circuit_breaker_state"
TRANSITION_METRIC = "circuit_breaker_state_transition_total"
_STATE_HELP = "Whether the circuit breaker is in this state (1) or not (0)."
_TRANSITION_HELP = "State transitions of the circuit breaker."


class _Metrics:
    """The two metric families of one registry. A custom collector rather
    than Gauge/Counter so that the counter has no ``_created`` series and a
    circuit's series can all be dropped at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, State] = {}  # circuit_name → current state; guarded by _lock
        self._trans: dict[tuple[str, str, str], float] = {}  # guarded by _lock

    def set(self, circuit: str, state: State) -> None:
        with self._lock:
            self._state[circuit] = state

    def transition(self, circuit: str, old: State, new: State) -> None:
        key = (circuit, str(old), str(new))
        with self._lock:
            self._state[circuit] = new
            self._trans[key] = self._trans.get(key, 0.0) + 1.0

    def forget(self, circuit: str) -> None:
        with self._lock:
            self._state.pop(circuit, None)
            for key in [k for k in self._trans if k[0] == circuit]:
                del self._trans[key]

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(STATE_METRIC, _STATE_HELP, labels=["circuit_name", "state"])
        yield CounterMetricFamily(TRANSITION_METRIC, _TRANSITION_HELP, labels=["circuit_name", "old_state", "new_state"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            states = sorted(self._state.items())
            trans = sorted(self._trans.items())
        g = GaugeMetricFamily(STATE_METRIC, _STATE_HELP, labels=["circuit_name", "state"])
        for circuit, current in states:
            for s in State:
                g.add_metric([circuit, s.value], 1.0 if s is current else 0.0)
        c = CounterMetricFamily(TRANSITION_METRIC, _TRANSITION_HELP, labels=["circuit_name", "old_state", "new_state"])
        for labels, v in trans:
            c.add_metric(list(labels), v)
        yield g
        yield c


_registries_lock = threading.Lock()
_default: _Metrics | None = None  # the module-level metrics on REGISTRY; guarded by _registries_lock
_by_registry: "weakref.WeakKeyDictionary[CollectorRegistry, _Metrics]" = weakref.WeakKeyDictionary()


def _metrics_for(registry: CollectorRegistry | None) -> _Metrics:
    global _default
    with _registries_lock:
        if registry is None or registry is REGISTRY:
            if _default is None:
                m = _Metrics()
                REGISTRY.register(m)  # ValueError if another component owns the names
                _default = m
            return _default
        m = _by_registry.get(registry)
        if m is None:
            m = _Metrics()
            registry.register(m)
            _by_registry[registry] = m
        return m


class PrometheusListener(Listener):
    """Exports the state and transitions of the breaker(s) it listens to
    under the label ``circuit_name=name``: one listener per circuit.

    ``registry`` None writes to the module-level metrics on
    ``prometheus_client.REGISTRY``; a ``CollectorRegistry`` isolates them
    (several listeners may share it). Registering fails with ValueError if
    the registry already has another collector with these metric names.

    The state gauge appears when a breaker is created with the listener
    (closed = 1) and follows every transition. ``close()`` drops every
    series of ``name``; it is idempotent, and the next transition (or a new
    breaker) exports them again.
    """

    def __init__(self, name: str, registry: CollectorRegistry | None = None) -> None:
        if not name:
            raise ValueError("PrometheusListener: name is required (the circuit_name label)")
        self.name = name
        self._metrics = _metrics_for(registry)

    def attach(self, circuit_name: str, state: State) -> None:
        self._metrics.set(self.name, state)

    def __call__(self, signal: Signal) -> None:
        self._metrics.transition(self.name, signal.old_state, signal.new_state)

    def close(self) -> None:
        self._metrics.forget(self.name)

    def __repr__(self) -> str:
        return f"PrometheusListener(name={self.name!r})"
