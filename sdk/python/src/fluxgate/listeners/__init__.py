"""Listeners hear every state transition of the breakers they are given to.

A listener is any callable taking a ``Signal``; subclass ``Listener`` to
make the contract explicit. A listener may also define
``attach(circuit_name, state)``, called once when a breaker is created with
it (in ``closed``), to export the initial state before any transition.

CircuitBreaker calls listeners in transition order with its lock held;
AsyncCircuitBreaker calls them on the event loop and awaits what they
return if it is awaitable. An exception from a listener is logged on the
``fluxgate`` logger and does not affect the breaker.
"""

from __future__ import annotations

import logging

from fluxgate.signal import Signal
from fluxgate.state import State

__all__ = ["Listener", "LogListener"]


class Listener:
    """Base of listeners: implement ``__call__(signal)``."""

    def __call__(self, signal: Signal) -> None:
        raise NotImplementedError

    def attach(self, circuit_name: str, state: State) -> None:
        """Called once by a new breaker; does nothing by default."""


class LogListener(Listener):
    """Logs every transition, at WARNING when the breaker opens and at
    ``level`` (default INFO) otherwise, on ``logger`` (default the
    ``fluxgate`` logger)::

        circuit 'payment_api': closed → open (... held: 6 of 10 calls failed ...)
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("fluxgate")
        self.level = level

    def __call__(self, signal: Signal) -> None:
        level = logging.WARNING if signal.new_state is State.OPEN else self.level
        self.logger.log(
            level,
            "circuit %r: %s → %s (%s)",
            signal.circuit_name,
            signal.old_state,
            signal.new_state,
            signal.reason,
            extra={
                "circuit_name": signal.circuit_name,
                "old_state": str(signal.old_state),
                "new_state": str(signal.new_state),
                "transition_timestamp": signal.timestamp,
            },
        )
