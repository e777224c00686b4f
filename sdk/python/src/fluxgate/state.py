"""The states of a circuit breaker."""

from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.StrEnum):
    """The state of a circuit breaker.

    A ``State`` is a ``str``: ``State.OPEN == "open"``, and ``str(state)`` is
    the name the metrics and logs use.

    * ``closed``: calls pass; their outcomes are counted in the window.
    * ``open``: every call is refused with ``CallNotPermittedError`` until the
      retry policy lets the breaker try again.
    * ``half_open``: at most ``max_half_open_calls`` calls at a time, each
      admitted by the permit policy, decide whether the breaker closes again.

    The only transitions are closed → open, open → half_open,
    half_open → closed and half_open → open, plus ``reset()`` (any → closed).
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
