"""The state machine both breakers share. Time is a parameter: every method
takes ``now``; the breakers own the clock and the locking."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fluxgate.errors import CallNotPermittedError
from fluxgate.permits import Permit
from fluxgate.retries import Retry
from fluxgate.signal import Signal
from fluxgate.state import State
from fluxgate.trackers import Tracker
from fluxgate.trippers import Tripper
from fluxgate.windows import Metrics, Window

log = logging.getLogger("fluxgate")

# The edges a breaker moves along on its own; reset() may also close it
# from any state.
ALLOWED = {
    (State.CLOSED, State.OPEN),
    (State.OPEN, State.HALF_OPEN),
    (State.HALF_OPEN, State.CLOSED),
    (State.HALF_OPEN, State.OPEN),
}


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted call: the phase it was admitted in."""

    generation: int
    state: State


class Core:
    """Not safe for concurrent use; CircuitBreaker locks around it and
    AsyncCircuitBreaker never awaits inside it."""

    def __init__(
        self,
        name: str,
        window: Window,
        tracker: Tracker,
        tripper: Tripper,
        retry: Retry,
        permit: Permit,
        slow_threshold: float,
        max_half_open_calls: int,
        listeners: Sequence[Callable[[Signal], Any]],
        now: float,
        deliver: Callable[[Callable[[Signal], Any], Signal], None],
    ) -> None:
        if not isinstance(max_half_open_calls, int) or max_half_open_calls < 1:
            raise ValueError(f"max_half_open_calls must be a positive int, got {max_half_open_calls!r}")
        if not slow_threshold > 0:
            raise ValueError(f"slow_threshold must be positive seconds, got {slow_threshold!r}")
        self.name = name
        self.tracker = tracker
        self.tripper = tripper
        self.retry = retry
        self.permit = permit
        self.slow_threshold = float(slow_threshold)
        self.max_half_open_calls = max_half_open_calls
        self.listeners = list(listeners)
        self._deliver = deliver
        thresholds = {self.slow_threshold} | tripper.thresholds()
        self._window = window.build(tuple(sorted(t for t in thresholds if not math.isinf(t))))
        self.state = State.CLOSED
        self.generation = 0
        self.since = now  # when the current state began
        self.retry_at = 0.0  # open: when probes are admitted
        self.reopens = 0  # openings in a row without closing, for Backoff
        self.streak = 0
        self.in_flight = 0  # half-open calls admitted and not finished
        self.probes_done = 0  # half-open calls recorded
        for lis in self.listeners:
            attach = getattr(lis, "attach", None)
            if callable(attach):
                try:
                    attach(name, self.state)
                except Exception:
                    log.exception("fluxgate: listener %r failed to attach to circuit %r", lis, name)

    # -- transitions -----------------------------------------------------

    def _to(self, new: State, now: float, reason: str) -> None:
        old = self.state
        self.state = new
        self.generation += 1
        self.since = now
        self._window.reset()
        self.streak = 0
        self.in_flight = 0
        self.probes_done = 0
        if new is State.OPEN:
            delay = self.retry.delay(self.reopens)
            self.reopens += 1
            self.retry_at = now + delay
        elif new is State.CLOSED:
            self.reopens = 0
        sig = Signal(self.name, old, new, now, reason)
        for lis in self.listeners:
            self._deliver(lis, sig)

    def reset(self, now: float) -> None:
        if self.state is State.CLOSED:
            self._window.reset()
            self.streak = 0
            self.reopens = 0
            return
        self._to(State.CLOSED, now, "reset")

    # -- calls -----------------------------------------------------------

    def acquire(self, now: float) -> Ticket:
        """Admit one call or raise CallNotPermittedError."""
        if self.state is State.OPEN:
            if now < self.retry_at:
                raise CallNotPermittedError(self.name, State.OPEN, self.retry_at - now)
            self._to(State.HALF_OPEN, now, f"open for {now - self.since:.3g}s")
        if self.state is State.HALF_OPEN:
            if self.in_flight >= self.max_half_open_calls:
                raise CallNotPermittedError(self.name, State.HALF_OPEN)
            if not self.permit.allow(now - self.since):
                raise CallNotPermittedError(self.name, State.HALF_OPEN)
            self.in_flight += 1
        return Ticket(self.generation, self.state)

    def release(self, ticket: Ticket, now: float, duration: float, exc: BaseException | None, record: bool = True) -> None:
        """End a call admitted by acquire. An outcome from an earlier phase
        (the breaker changed state during the call) is not counted."""
        if ticket.generation != self.generation:
            return
        if self.state is State.HALF_OPEN:
            self.in_flight -= 1
        if not record:
            return
        failed = exc is not None and self.tracker(exc)
        self._window.record(now, failed, max(duration, 0.0))
        self.streak = self.streak + 1 if failed else 0
        m = self.metrics(now)
        if self.state is State.CLOSED:
            if self.tripper(m, State.CLOSED, self.slow_threshold):
                self._to(State.OPEN, now, self._why(m))
        elif self.state is State.HALF_OPEN:
            self.probes_done += 1
            if self.tripper(m, State.HALF_OPEN, self.slow_threshold):
                self._to(State.OPEN, now, self._why(m))
            elif self.probes_done >= self.max_half_open_calls:
                self._to(State.CLOSED, now, f"{self.probes_done} probes did not trip {self.tripper!r}")

    def metrics(self, now: float) -> Metrics:
        total, failures, dur, slow = self._window.metrics(now)
        return Metrics(total, failures, dur, slow, self.streak)

    def _why(self, m: Metrics) -> str:
        s = f"{self.tripper!r} held: {m.failures} of {m.total} calls failed (rate {m.failure_rate:.2f}), streak {m.failure_streak}"
        if m.slow:
            s += ", slow " + ", ".join(f"{n} >= {t:g}s" for t, n in sorted(m.slow.items()))
        return s
