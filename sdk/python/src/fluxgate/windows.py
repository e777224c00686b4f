"""Sliding windows: how far back a breaker counts call outcomes.

A window is a specification; every breaker builds its own state from it
(``build``), so one window object may configure many breakers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Window", "CountWindow", "TimeWindow", "Metrics"]


@dataclass(frozen=True, slots=True)
class Metrics:
    """What a window holds now, as trippers read it.

    ``slow`` maps each slow threshold (seconds) the breaker tracks to the
    number of calls that took at least that long. ``failure_streak`` is the
    number of tracked failures in a row, most recent last.
    """

    total: int = 0
    failures: int = 0
    duration_sum: float = 0.0
    slow: dict[float, int] = field(default_factory=dict)
    failure_streak: int = 0

    @property
    def failure_rate(self) -> float:
        return self.failures / self.total if self.total else 0.0

    @property
    def avg_duration(self) -> float:
        return self.duration_sum / self.total if self.total else 0.0

    def slow_rate(self, threshold: float) -> float:
        if not self.total:
            return 0.0
        return self.slow.get(threshold, 0) / self.total


class WindowState:
    """The per-breaker state of a window. Not safe for concurrent use: the
    breaker serializes calls to it."""

    def record(self, now: float, failed: bool, duration: float) -> None:
        raise NotImplementedError

    def metrics(self, now: float) -> tuple[int, int, float, dict[float, int]]:
        """(total, failures, duration_sum, slow counts) at now."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class Window:
    """Base of window specifications."""

    def build(self, thresholds: tuple[float, ...]) -> WindowState:
        """A fresh state that counts slow calls for each threshold."""
        raise NotImplementedError


class CountWindow(Window):
    """The last ``size`` calls."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"CountWindow: size must be a positive int, got {size!r}")
        self.size = size

    def __repr__(self) -> str:
        return f"CountWindow(size={self.size})"

    def build(self, thresholds: tuple[float, ...]) -> WindowState:
        return _CountState(self.size, thresholds)


class _CountState(WindowState):
    def __init__(self, size: int, thresholds: tuple[float, ...]) -> None:
        self._thresholds = thresholds
        self._calls: deque[tuple[bool, float]] = deque(maxlen=size)
        self.reset()

    def reset(self) -> None:
        self._calls.clear()
        self._failures = 0
        self._dur = 0.0
        self._slow = dict.fromkeys(self._thresholds, 0)

    def record(self, now: float, failed: bool, duration: float) -> None:
        if len(self._calls) == self._calls.maxlen:
            old_failed, old_dur = self._calls[0]
            self._failures -= old_failed
            self._dur -= old_dur
            for t in self._thresholds:
                if old_dur >= t:
                    self._slow[t] -= 1
        self._calls.append((failed, duration))
        self._failures += failed
        self._dur += duration
        for t in self._thresholds:
            if duration >= t:
                self._slow[t] += 1

    def metrics(self, now: float) -> tuple[int, int, float, dict[float, int]]:
        return len(self._calls), self._failures, max(self._dur, 0.0), dict(self._slow)


class TimeWindow(Window):
    """The calls of the last ``size`` seconds, in one-second buckets."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"TimeWindow: size must be a positive int of seconds, got {size!r}")
        self.size = size

    def __repr__(self) -> str:
        return f"TimeWindow(size={self.size})"

    def build(self, thresholds: tuple[float, ...]) -> WindowState:
        return _TimeState(self.size, thresholds)


class _Bucket:
    __slots__ = ("second", "total", "failures", "dur", "slow")

    def __init__(self, second: int, nslow: int) -> None:
        self.second = second
        self.total = 0
        self.failures = 0
        self.dur = 0.0
        self.slow = [0] * nslow


class _TimeState(WindowState):
    def __init__(self, size: int, thresholds: tuple[float, ...]) -> None:
        self._size = size
        self._thresholds = thresholds
        self._buckets: deque[_Bucket] = deque()

    def reset(self) -> None:
        self._buckets.clear()

    def _evict(self, now: float) -> None:
        oldest = math.floor(now) - self._size + 1
        while self._buckets and self._buckets[0].second < oldest:
            self._buckets.popleft()

    def record(self, now: float, failed: bool, duration: float) -> None:
        self._evict(now)
        sec = math.floor(now)
        if not self._buckets or self._buckets[-1].second < sec:
            self._buckets.append(_Bucket(sec, len(self._thresholds)))
        b = self._buckets[-1]  # a clock that went back counts in the newest bucket
        b.total += 1
        b.failures += failed
        b.dur += duration
        for i, t in enumerate(self._thresholds):
            if duration >= t:
                b.slow[i] += 1

    def metrics(self, now: float) -> tuple[int, int, float, dict[float, int]]:
        self._evict(now)
        total = failures = 0
        dur = 0.0
        slow = [0] * len(self._thresholds)
        for b in self._buckets:
            total += b.total
            failures += b.failures
            dur += b.dur
            for i, n in enumerate(b.slow):
                slow[i] += n
        return total, failures, dur, dict(zip(self._thresholds, slow))
