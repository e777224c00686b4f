"""Errors raised by circuit breakers."""

from __future__ import annotations

from fluxgate.state import State

__all__ = ["CallNotPermittedError"]


class CallNotPermittedError(Exception):
    """A call the breaker refused: it is open, or half-open without a free
    probe slot or permit.

    ``retry_after`` is how many seconds until an open breaker admits probes
    (0.0 when half-open).
    """

    def __init__(self, circuit_name: str, state: State, retry_after: float = 0.0) -> None:
        self.circuit_name = circuit_name
        self.state = state
        self.retry_after = retry_after
        if state is State.OPEN:
            msg = f"circuit {circuit_name!r} is open; retry in {retry_after:.3g}s"
        else:
            msg = f"circuit {circuit_name!r} is half_open and admits no more calls now"
        super().__init__(msg)
