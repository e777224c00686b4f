"""Retries: how long an open breaker waits before it admits probes."""

from __future__ import annotations

import math
import random as _random

__all__ = ["Retry", "Never", "Always", "Cooldown", "Backoff"]


def _jitter(name: str, r: float) -> float:
    if not (0.0 <= r <= 1.0):
        raise ValueError(f"{name}: jitter_ratio must be in [0, 1], got {r!r}")
    return float(r)


class Retry:
    """Base of retry policies. ``delay(attempt)`` is the seconds the breaker
    stays open the ``attempt``-th time in a row (0 for the first opening
    after it was closed)."""

    def delay(self, attempt: int) -> float:
        raise NotImplementedError


class Never(Retry):
    """Stay open until ``reset()``."""

    def delay(self, attempt: int) -> float:
        return math.inf

    def __repr__(self) -> str:
        return "Never()"


class Always(Retry):
    """Admit probes on the very next call."""

    def delay(self, attempt: int) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "Always()"


class Cooldown(Retry):
    """A fixed wait of ``duration`` seconds, spread by ±``jitter_ratio``."""

    def __init__(self, duration: float, jitter_ratio: float = 0.0, rng: _random.Random | None = None) -> None:
        if not duration >= 0:
            raise ValueError(f"Cooldown: duration must be >= 0 seconds, got {duration!r}")
        self.duration = float(duration)
        self.jitter_ratio = _jitter("Cooldown", jitter_ratio)
        self._rng = rng or _random.Random()

    def delay(self, attempt: int) -> float:
        d = self.duration
        if self.jitter_ratio:
            d *= 1.0 + self._rng.uniform(-self.jitter_ratio, self.jitter_ratio)
        return d

    def __repr__(self) -> str:
        return f"Cooldown(duration={self.duration}, jitter_ratio={self.jitter_ratio})"


class Backoff(Retry):
    """``initial × multiplier^attempt`` seconds, at most ``max_duration``,
    spread by ±``jitter_ratio``: each reopening from half-open waits longer,
    and closing starts over from ``initial``."""

    def __init__(
        self,
        initial: float = 10.0,
        multiplier: float = 2.0,
        max_duration: float = 300.0,
        jitter_ratio: float = 0.0,
        rng: _random.Random | None = None,
    ) -> None:
        if not initial > 0 or not multiplier >= 1 or not max_duration >= initial:
            raise ValueError(
                f"Backoff: want initial > 0, multiplier >= 1, max_duration >= initial; "
                f"got {initial!r}, {multiplier!r}, {max_duration!r}"
            )
        self.initial = float(initial)
        self.multiplier = float(multiplier)
        self.max_duration = float(max_duration)
        self.jitter_ratio = _jitter("Backoff", jitter_ratio)
        self._rng = rng or _random.Random()

    def delay(self, attempt: int) -> float:
        try:
            d = min(self.initial * self.multiplier**attempt, self.max_duration)
        except OverflowError:
            d = self.max_duration
        if self.jitter_ratio:
            d *= 1.0 + self._rng.uniform(-self.jitter_ratio, self.jitter_ratio)
        return d

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, multiplier={self.multiplier}, "
            f"max_duration={self.max_duration}, jitter_ratio={self.jitter_ratio})"
        )
