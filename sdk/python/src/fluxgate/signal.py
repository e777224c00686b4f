"""The event a breaker sends its listeners on every state transition."""

from __future__ import annotations

from dataclasses import dataclass

from fluxgate.state import State

__all__ = ["Signal"]


@dataclass(frozen=True, slots=True)
class Signal:
    """One state transition of one circuit breaker.

    ``timestamp`` is the breaker's clock reading at the transition (seconds;
    with the default clock, ``time.time()``). ``reason`` says what caused the
    transition, with the value that did, e.g.
    ``"failure rate 0.60 over 20 calls"``.
    """

    circuit_name: str
    old_state: State
    new_state: State
    timestamp: float
    reason: str = ""
