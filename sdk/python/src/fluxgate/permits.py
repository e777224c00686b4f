"""Permits: which calls a half-open breaker admits as probes.

The permit is asked for every call while half-open, after the
``max_half_open_calls`` cap; a call it refuses raises
``CallNotPermittedError``.
"""

from __future__ import annotations

import random as _random

__all__ = ["Permit", "All", "Random", "RampUp"]


class Permit:
    """Base of permits. ``allow(elapsed)`` decides one call, ``elapsed``
    seconds after the breaker became half-open."""

    def allow(self, elapsed: float) -> bool:
        raise NotImplementedError


class All(Permit):
    """Admit every call (up to ``max_half_open_calls`` at a time)."""

    def allow(self, elapsed: float) -> bool:
        return True

    def __repr__(self) -> str:
        return "All()"


def _ratio(name: str, r: float) -> float:
    if not (0.0 <= r <= 1.0):
        raise ValueError(f"{name}: ratio must be in [0, 1], got {r!r}")
    return float(r)


class Random(Permit):
    """Admit each call with probability ``ratio``."""

    def __init__(self, ratio: float, rng: _random.Random | None = None) -> None:
        self.ratio = _ratio("Random", ratio)
        self._rng = rng or _random.Random()

    def allow(self, elapsed: float) -> bool:
        return self._rng.random() < self.ratio

    def __repr__(self) -> str:
        return f"Random(ratio={self.ratio})"


class RampUp(Permit):
    """Admit each call with a probability that grows linearly from
    ``initial`` to ``final`` over ``duration`` seconds of half-open."""

    def __init__(
        self,
        initial: float = 0.1,
        final: float = 1.0,
        duration: float = 60.0,
        rng: _random.Random | None = None,
    ) -> None:
        self.initial = _ratio("RampUp initial", initial)
        self.final = _ratio("RampUp final", final)
        if not duration >= 0:
            raise ValueError(f"RampUp: duration must be >= 0 seconds, got {duration!r}")
        self.duration = float(duration)
        self._rng = rng or _random.Random()

    def ratio(self, elapsed: float) -> float:
        if self.duration == 0 or elapsed >= self.duration:
            return self.final
        return self.initial + (self.final - self.initial) * max(elapsed, 0.0) / self.duration

    def allow(self, elapsed: float) -> bool:
        return self._rng.random() < self.ratio(elapsed)

    def __repr__(self) -> str:
        return f"RampUp(initial={self.initial}, final={self.final}, duration={self.duration})"
