"""FluxGate for Python.

* A composable circuit breaker — ``CircuitBreaker`` for threads,
  ``AsyncCircuitBreaker`` for asyncio — built from windows, trackers,
  trippers, retries and permits, with listeners (``fluxgate.listeners``,
  Prometheus in ``fluxgate.listeners.prometheus``).
* A client of the FluxGate agent's check API with ASGI and WSGI middleware
  (``fluxgate.flowcontrol``).

No dependencies beyond the standard library; ``fluxgate[prometheus]`` adds
prometheus-client for PrometheusListener.
"""

from fluxgate.breaker import AsyncCircuitBreaker, CircuitBreaker, default_tripper
from fluxgate.errors import CallNotPermittedError
from fluxgate.signal import Signal
from fluxgate.state import State

__all__ = [
    "AsyncCircuitBreaker",
    "CallNotPermittedError",
    "CircuitBreaker",
    "Signal",
    "State",
    "default_tripper",
]

__version__ = "0.1.0"
