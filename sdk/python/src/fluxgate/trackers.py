"""Trackers: which exceptions count as failures.

An exception a tracker does not track is re-raised to the caller as usual
but counts as a *success* for the breaker (the dependency answered; the
caller's input was wrong, say). Trackers combine with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["Tracker", "All", "TypeOf", "Custom"]


class Tracker:
    """Base of trackers: ``tracker(exc)`` is True when exc is a failure."""

    def __call__(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def __and__(self, other: Tracker) -> Tracker:
        return _Pred(lambda e: self(e) and other(e), f"({self!r} & {other!r})")

    def __or__(self, other: Tracker) -> Tracker:
        return _Pred(lambda e: self(e) or other(e), f"({self!r} | {other!r})")

    def __invert__(self) -> Tracker:
        return _Pred(lambda e: not self(e), f"~{self!r}")


class _Pred(Tracker):
    def __init__(self, fn: Callable[[BaseException], bool], text: str) -> None:
        self._fn = fn
        self._text = text

    def __call__(self, exc: BaseException) -> bool:
        return bool(self._fn(exc))

    def __repr__(self) -> str:
        return self._text


class All(Tracker):
    """Every ``Exception`` is a failure (the default)."""

    def __call__(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception)

    def __repr__(self) -> str:
        return "All()"


class TypeOf(Tracker):
    """Exceptions of the given types (or their subclasses) are failures."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        if not exceptions:
            raise ValueError("TypeOf: name at least one exception type")
        for e in exceptions:
            if not (isinstance(e, type) and issubclass(e, BaseException)):
                raise TypeError(f"TypeOf: {e!r} is not an exception type")
        self.exceptions = exceptions

    def __call__(self, exc: BaseException) -> bool:
        return isinstance(exc, self.exceptions)

    def __repr__(self) -> str:
        return "TypeOf(" + ", ".join(e.__name__ for e in self.exceptions) + ")"


class Custom(Tracker):
    """``fn(exc)`` decides whether exc is a failure."""

    def __init__(self, fn: Callable[[BaseException], bool]) -> None:
        if not callable(fn):
            raise TypeError("Custom: fn must be callable")
        self.fn = fn

    def __call__(self, exc: BaseException) -> bool:
        return bool(self.fn(exc))

    def __repr__(self) -> str:
        return f"Custom({getattr(self.fn, '__name__', self.fn)!r})"
