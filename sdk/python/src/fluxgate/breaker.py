"""CircuitBreaker (threads) and AsyncCircuitBreaker (asyncio)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar, overload

from fluxgate._core import Core, Ticket, log
from fluxgate.errors import CallNotPermittedError
from fluxgate.permits import Permit, RampUp
from fluxgate.retries import Cooldown, Retry
from fluxgate.signal import Signal
from fluxgate.state import State
from fluxgate.trackers import All, Tracker
from fluxgate.trippers import Closed, FailureRate, HalfOpened, MinRequests, Tripper
from fluxgate.windows import CountWindow, Metrics, Window

__all__ = ["CircuitBreaker", "AsyncCircuitBreaker", "default_tripper"]

F = TypeVar("F", bound=Callable[..., Any])


def default_tripper() -> Tripper:
    """``(Closed() & MinRequests(100) & FailureRate(0.5)) | (HalfOpened() & FailureRate(0.5))``:
    closed, open once 100 calls are counted and half of them failed;
    half-open, open again as soon as half of the probes so far failed."""
    return (Closed() & MinRequests(100) & FailureRate(0.5)) | (HalfOpened() & FailureRate(0.5))


class _Base:
    def __init__(
        self,
        name: str = "default",
        window: Window | None = None,
        tracker: Tracker | None = None,
        tripper: Tripper | None = None,
        retry: Retry | None = None,
        permit: Permit | None = None,
        listeners: Sequence[Callable[[Signal], Any]] = (),
        slow_threshold: float = float("inf"),
        max_half_open_calls: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._pending: list[Awaitable[Any]] = []
        self._core = Core(
            name=name,
            window=window if window is not None else CountWindow(size=100),
            tracker=tracker if tracker is not None else All(),
            tripper=tripper if tripper is not None else default_tripper(),
            retry=retry if retry is not None else Cooldown(duration=60.0),
            permit=permit if permit is not None else RampUp(initial=0.1, final=1.0, duration=60.0),
            slow_threshold=slow_threshold,
            max_half_open_calls=max_half_open_calls,
            listeners=listeners,
            now=clock(),
            deliver=self._deliver,
        )
        self._entered: contextvars.ContextVar[tuple[tuple[Ticket, float], ...]] = contextvars.ContextVar(
            f"fluxgate.breaker.{name}.{id(self)}", default=()
        )

    def _deliver(self, listener: Callable[[Signal], Any], sig: Signal) -> None:
        try:
            out = listener(sig)
        except Exception:
            log.exception("fluxgate: listener %r failed on %s → %s of circuit %r", listener, sig.old_state, sig.new_state, sig.circuit_name)
            return
        if inspect.isawaitable(out):
            self._awaitable(out)

    def _awaitable(self, out: Awaitable[Any]) -> None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self._core.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, state={self.state!s})"

    @property
    def max_half_open_calls(self) -> int:
        return self._core.max_half_open_calls

    @property
    def slow_threshold(self) -> float:
        return self._core.slow_threshold


class CircuitBreaker(_Base):
    """A circuit breaker for synchronous calls, safe for use from many threads.

    Use it as a decorator (``@cb`` or ``@cb(fallback=fn)``), a context
    manager (``with cb: ...``) or with ``cb.call(fn, *args)``. Every part
    is optional; ``CircuitBreaker(name="x")`` counts the last 100 calls,
    treats every ``Exception`` as a failure, opens when at least 100 calls
    are counted and at least half failed, stays open 60 s, then admits
    probes (at most 10 at a time, a share growing from 10% to 100% over
    60 s) and closes after 10 probes unless half of them failed.

    Listeners are called in transition order with the breaker's lock held:
    keep them quick and do not call the breaker from them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def _awaitable(self, out: Awaitable[Any]) -> None:
        if asyncio.iscoroutine(out):
            out.close()
        log.warning("fluxgate: CircuitBreaker %r got a coroutine from a listener; use AsyncCircuitBreaker for async listeners", self.name)

    @property
    def state(self) -> State:
        with self._lock:
            return self._core.state

    def metrics(self) -> Metrics:
        """What the window holds now."""
        with self._lock:
            return self._core.metrics(self._clock())

    def reset(self) -> None:
        """Close the breaker and forget the window."""
        with self._lock:
            self._core.reset(self._clock())

    def _acquire(self) -> tuple[Ticket, float]:
        with self._lock:
            now = self._clock()
            return self._core.acquire(now), now

    def _release(self, ticket: Ticket, start: float, exc: BaseException | None) -> None:
        with self._lock:
            now = self._clock()
            record = exc is None or isinstance(exc, Exception)
            self._core.release(ticket, now, now - start, exc, record)

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call func(*args, **kwargs) through the breaker."""
        ticket, start = self._acquire()
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            self._release(ticket, start, e)
            raise
        self._release(ticket, start, None)
        return result

    @overload
    def __call__(self, func: F, /) -> F: ...
    @overload
    def __call__(self, *, fallback: Callable[[Exception], Any] | None = None) -> Callable[[F], F]: ...

    def __call__(self, func: Any = None, /, *, fallback: Callable[[Exception], Any] | None = None) -> Any:
        if func is None:
            return lambda f: self._wrap(f, fallback)
        return self._wrap(func, fallback)

    def _wrap(self, func: F, fallback: Callable[[Exception], Any] | None) -> F:
        if not callable(func):
            raise TypeError(f"CircuitBreaker decorates callables, not {func!r}")
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"{func.__qualname__} is a coroutine function: use AsyncCircuitBreaker")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if fallback is None:
                return self.call(func, *args, **kwargs)
            try:
                return self.call(func, *args, **kwargs)
            except Exception as e:
                return fallback(e)

        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> CircuitBreaker:
        entry = self._acquire()
        self._entered.set(self._entered.get() + (entry,))
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        stack = self._entered.get()
        if not stack:
            raise RuntimeError("CircuitBreaker.__exit__ without __enter__ in this context")
        self._entered.set(stack[:-1])
        ticket, start = stack[-1]
        self._release(ticket, start, exc)


class AsyncCircuitBreaker(_Base):
    """A circuit breaker for coroutines, for use from one event loop.

    The same configuration and defaults as CircuitBreaker. Use it as a
    decorator of ``async def`` functions (``@cb`` or ``@cb(fallback=fn)``;
    fallback may be sync or async), ``async with cb: ...`` or
    ``await cb.call(fn, *args)``. Listeners may be plain callables, called
    in transition order, or return awaitables, awaited by the call that
    caused the transition.
    """

    def _awaitable(self, out: Awaitable[Any]) -> None:
        self._pending.append(out)

    async def _flush(self) -> None:
        while self._pending:
            aw = self._pending.pop(0)
            try:
                await aw
            except Exception:
                log.exception("fluxgate: async listener of circuit %r failed", self.name)

    @property
    def state(self) -> State:
        return self._core.state

    def metrics(self) -> Metrics:
        return self._core.metrics(self._clock())

    async def reset(self) -> None:
        self._core.reset(self._clock())
        await self._flush()

    async def _acquire(self) -> tuple[Ticket, float]:
        now = self._clock()
        try:
            ticket = self._core.acquire(now)
        finally:
            await self._flush()
        return ticket, now

    async def _release(self, ticket: Ticket, start: float, exc: BaseException | None) -> None:
        now = self._clock()
        record = exc is None or isinstance(exc, Exception)
        self._core.release(ticket, now, now - start, exc, record)
        await self._flush()

    async def call(self, func: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        """Await func(*args, **kwargs) through the breaker."""
        ticket, start = await self._acquire()
        try:
            result = await func(*args, **kwargs)
        except BaseException as e:
            await self._release(ticket, start, e)
            raise
        await self._release(ticket, start, None)
        return result

    @overload
    def __call__(self, func: F, /) -> F: ...
    @overload
    def __call__(self, *, fallback: Callable[[Exception], Any] | None = None) -> Callable[[F], F]: ...

    def __call__(self, func: Any = None, /, *, fallback: Callable[[Exception], Any] | None = None) -> Any:
        if func is None:
            return lambda f: self._wrap(f, fallback)
        return self._wrap(func, fallback)

    def _wrap(self, func: F, fallback: Callable[[Exception], Any] | None) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"AsyncCircuitBreaker decorates coroutine functions, not {func!r}: use CircuitBreaker")

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if fallback is None:
                return await self.call(func, *args, **kwargs)
            try:
                return await self.call(func, *args, **kwargs)
            except Exception as e:
                out = fallback(e)
                if inspect.isawaitable(out):
                    out = await out
                return out

        return wrapper  # type: ignore[return-value]

    async def __aenter__(self) -> AsyncCircuitBreaker:
        entry = await self._acquire()
        self._entered.set(self._entered.get() + (entry,))
        return self

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        stack = self._entered.get()
        if not stack:
            raise RuntimeError("AsyncCircuitBreaker.__aexit__ without __aenter__ in this context")
        self._entered.set(stack[:-1])
        ticket, start = stack[-1]
        await self._release(ticket, start, exc)
