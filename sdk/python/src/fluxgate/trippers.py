"""Trippers: when a breaker opens.

A tripper is a condition over the window's ``Metrics`` and the breaker's
state. After every recorded call the breaker evaluates its tripper: when it
holds in ``closed`` or ``half_open``, the breaker opens. Conditions combine
with ``&`` and ``|``::

    Closed() & MinRequests(10) & FailureRate(0.5)
    FailureStreak(5) | (MinRequests(20) & (FailureRate(0.5) | SlowRate(0.3, threshold=1.0)))

``Closed()`` and ``HalfOpened()`` hold only in that state, so one tripper can
treat the two differently. Rates hold when they reach their ratio (>=).
"""

from __future__ import annotations

from typing import Callable

from fluxgate.state import State
from fluxgate.windows import Metrics

__all__ = [
    "Tripper",
    "Closed",
    "HalfOpened",
    "MinRequests",
    "FailureRate",
    "SlowRate",
    "AvgLatency",
    "FailureStreak",
]


class Tripper:
    """Base of trippers. ``tripper(metrics, state, slow_threshold)`` is True
    when the breaker should open; ``slow_threshold`` is the breaker's own,
    used by ``SlowRate`` without a threshold of its own."""

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        raise NotImplementedError

    def thresholds(self) -> set[float]:
        """Slow-call thresholds this tripper reads, for the window to count."""
        return set()

    def __and__(self, other: Tripper) -> Tripper:
        return _Both(self, other, all, "&")

    def __or__(self, other: Tripper) -> Tripper:
        return _Both(self, other, any, "|")


class _Both(Tripper):
    def __init__(self, a: Tripper, b: Tripper, op: Callable[..., bool], sym: str) -> None:
        for t in (a, b):
            if not isinstance(t, Tripper):
                raise TypeError(f"trippers combine only with trippers, not {t!r}")
        self._a, self._b, self._op, self._sym = a, b, op, sym

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return self._op(t(metrics, state, slow_threshold) for t in (self._a, self._b))

    def thresholds(self) -> set[float]:
        return self._a.thresholds() | self._b.thresholds()

    def __repr__(self) -> str:
        return f"({self._a!r} {self._sym} {self._b!r})"


class Closed(Tripper):
    """Holds while the breaker is closed."""

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return state is State.CLOSED

    def __repr__(self) -> str:
        return "Closed()"


class HalfOpened(Tripper):
    """Holds while the breaker is half-open."""

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return state is State.HALF_OPEN

    def __repr__(self) -> str:
        return "HalfOpened()"


def _ratio(name: str, r: float) -> float:
    if not (0.0 < r <= 1.0):
        raise ValueError(f"{name}: ratio must be in (0, 1], got {r!r}")
    return float(r)


class MinRequests(Tripper):
    """Holds when the window holds at least ``count`` calls."""

    def __init__(self, count: int) -> None:
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"MinRequests: count must be a positive int, got {count!r}")
        self.count = count

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return metrics.total >= self.count

    def __repr__(self) -> str:
        return f"MinRequests({self.count})"


class FailureRate(Tripper):
    """Holds when at least ``ratio`` of the window's calls failed."""

    def __init__(self, ratio: float) -> None:
        self.ratio = _ratio("FailureRate", ratio)

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return metrics.total > 0 and metrics.failure_rate >= self.ratio

    def __repr__(self) -> str:
        return f"FailureRate({self.ratio})"


class SlowRate(Tripper):
    """Holds when at least ``ratio`` of the window's calls took ``threshold``
    seconds or longer (default: the breaker's ``slow_threshold``)."""

    def __init__(self, ratio: float, threshold: float | None = None) -> None:
        self.ratio = _ratio("SlowRate", ratio)
        if threshold is not None and not threshold > 0:
            raise ValueError(f"SlowRate: threshold must be positive seconds, got {threshold!r}")
        self.threshold = threshold

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        t = self.threshold if self.threshold is not None else slow_threshold
        return metrics.total > 0 and metrics.slow_rate(t) >= self.ratio

    def thresholds(self) -> set[float]:
        return {self.threshold} if self.threshold is not None else set()

    def __repr__(self) -> str:
        return f"SlowRate({self.ratio}, threshold={self.threshold})"


class AvgLatency(Tripper):
    """Holds when the window's calls took ``threshold`` seconds or more on average."""

    def __init__(self, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError(f"AvgLatency: threshold must be positive seconds, got {threshold!r}")
        self.threshold = float(threshold)

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return metrics.total > 0 and metrics.avg_duration >= self.threshold

    def __repr__(self) -> str:
        return f"AvgLatency({self.threshold})"


class FailureStreak(Tripper):
    """Holds after ``count`` tracked failures in a row."""

    def __init__(self, count: int) -> None:
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"FailureStreak: count must be a positive int, got {count!r}")
        self.count = count

    def __call__(self, metrics: Metrics, state: State, slow_threshold: float) -> bool:
        return metrics.failure_streak >= self.count

    def __repr__(self) -> str:
        return f"FailureStreak({self.count})"
