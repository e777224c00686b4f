"""The breaker's state machine: table tests and randomized properties."""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading

import pytest

from fluxgate import AsyncCircuitBreaker, CallNotPermittedError, CircuitBreaker, Signal, State
from fluxgate.listeners import Listener
from fluxgate.permits import All, Random, RampUp
from fluxgate.retries import Always, Backoff, Cooldown, Never
from fluxgate.trackers import Custom, TypeOf
from fluxgate.trippers import (
    AvgLatency,
    Closed,
    FailureRate,
    FailureStreak,
    HalfOpened,
    MinRequests,
    SlowRate,
)
from fluxgate.windows import CountWindow, TimeWindow

ALLOWED = {
    (State.CLOSED, State.OPEN),
    (State.OPEN, State.HALF_OPEN),
    (State.HALF_OPEN, State.CLOSED),
    (State.HALF_OPEN, State.OPEN),
}


def fail(exc: BaseException = ConnectionError("down")):
    raise exc


def run(cb: CircuitBreaker, outcome: BaseException | None) -> str:
    """One call: "ok", "err" or "refused"."""
    try:
        cb.call(fail, outcome) if outcome else cb.call(lambda: None)
    except CallNotPermittedError:
        return "refused"
    except Exception:
        return "err"
    return "ok"


def test_defaults(clock):
    sigs: list[Signal] = []
    cb = CircuitBreaker(name="x", clock=clock, listeners=[sigs.append])
    assert cb.state is State.CLOSED and cb.max_half_open_calls == 10
    # 99 failures: not yet 100 calls.
    for _ in range(99):
        assert run(cb, ValueError()) == "err"
    assert cb.state is State.CLOSED
    # 100 calls, 50 % failed: opens.
    run(cb, ValueError())
    assert cb.state is State.OPEN and [s.new_state for s in sigs] == [State.OPEN]
    assert "100 of 100 calls failed" in sigs[0].reason
    clock.advance(59.9)
    with pytest.raises(CallNotPermittedError) as ei:
        cb.call(lambda: None)
    assert ei.value.state is State.OPEN and ei.value.retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    # The next call makes it half-open; the RampUp permit admits 10 % of
    # the calls at first, all of them after 60 s.
    first = run(cb, None)
    assert cb.state is State.HALF_OPEN
    clock.advance(60)
    n = 0
    while cb.state is State.HALF_OPEN:
        assert run(cb, None) == "ok"
        n += 1
    assert n == 10 - (first == "ok") and cb.state is State.CLOSED
    assert [(s.old_state, s.new_state) for s in sigs] == [
        (State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN), (State.HALF_OPEN, State.CLOSED)]


def test_failure_rate_half_not_reached(clock):
    cb = CircuitBreaker(name="x", clock=clock)
    for i in range(200):
        run(cb, ValueError() if i % 3 == 0 else None)  # a third fail
    assert cb.state is State.CLOSED


def test_untracked_exception_is_success(clock):
    cb = CircuitBreaker(name="x", tracker=TypeOf(ConnectionError), tripper=FailureStreak(2), clock=clock)
    for _ in range(5):
        assert run(cb, KeyError("4xx")) == "err"
    assert cb.state is State.CLOSED and cb.metrics().failures == 0
    run(cb, ConnectionError())
    run(cb, ConnectionError())
    assert cb.state is State.OPEN


def test_custom_tracker_and_combinators(clock):
    t = Custom(lambda e: getattr(e, "status", 0) >= 500) | TypeOf(TimeoutError)
    assert t(TimeoutError()) and not t(KeyError())
    assert (~TypeOf(KeyError))(ValueError()) and not (TypeOf(KeyError) & TypeOf(ValueError))(KeyError())


def test_half_open_reopens_and_backoff_grows(clock):
    sigs: list[Signal] = []
    cb = CircuitBreaker(name="x", tripper=FailureStreak(1), retry=Backoff(initial=1, multiplier=2, max_duration=5),
                        permit=All(), max_half_open_calls=2, clock=clock, listeners=[sigs.append])
    run(cb, ValueError())
    waits = []
    for _ in range(5):
        assert cb.state is State.OPEN
        waited = 0.0
        while run(cb, ValueError()) == "refused":
            clock.advance(0.5)
            waited += 0.5
        waits.append(waited)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    while run(cb, None) == "refused":
        clock.advance(0.5)
    run(cb, None)
    assert cb.state is State.CLOSED
    run(cb, ValueError())
    waited = 0.0
    while run(cb, None) == "refused":
        clock.advance(0.5)
        waited += 0.5
    assert waited == 1.0, "closing starts the backoff over"


def test_retries():
    assert Never().delay(3) == float("inf") and Always().delay(0) == 0
    c = Cooldown(duration=10, jitter_ratio=0.2, rng=random.Random(1))
    assert all(8 <= c.delay(0) <= 12 for _ in range(100))


def test_permits():
    r = RampUp(initial=0.1, final=0.9, duration=10)
    assert r.ratio(0) == pytest.approx(0.1) and r.ratio(5) == pytest.approx(0.5) and r.ratio(99) == 0.9
    rng = random.Random(7)
    admitted = sum(Random(ratio=0.3, rng=rng).allow(0) for _ in range(10000))
    assert 2700 < admitted < 3300


def test_slow_calls(clock):
    class Slow:
        def __init__(self, s):
            self.s = s

        def __call__(self):
            clock.advance(self.s)

    cb = CircuitBreaker(name="s", tripper=MinRequests(4) & SlowRate(0.5, threshold=2.0), clock=clock)
    for s in (3, 0.1, 0.1):
        cb.call(Slow(s))
    assert cb.state is State.CLOSED
    cb.call(Slow(2.0))
    assert cb.state is State.OPEN
    # slow_threshold is what SlowRate without a threshold reads.
    cb2 = CircuitBreaker(name="s2", tripper=MinRequests(2) & SlowRate(1.0), slow_threshold=1.0, clock=clock)
    cb2.call(Slow(1.5))
    cb2.call(Slow(1.0))
    assert cb2.state is State.OPEN
    cb3 = CircuitBreaker(name="s3", tripper=MinRequests(2) & AvgLatency(1.0), clock=clock)
    cb3.call(Slow(0.5))
    cb3.call(Slow(1.4))
    assert cb3.state is State.CLOSED
    cb3.call(Slow(1.2))
    assert cb3.state is State.OPEN


def test_time_window_forgets(clock):
    cb = CircuitBreaker(name="t", window=TimeWindow(size=10), tripper=MinRequests(3) & FailureRate(1.0), clock=clock)
    run(cb, ValueError())
    run(cb, ValueError())
    clock.advance(10)
    assert cb.metrics().total == 0
    run(cb, ValueError())
    assert cb.state is State.CLOSED
    run(cb, ValueError())
    run(cb, ValueError())
    assert cb.state is State.OPEN


def test_count_window_slides(clock):
    cb = CircuitBreaker(name="c", window=CountWindow(size=4), tripper=MinRequests(4) & FailureRate(0.75), clock=clock)
    for o in (ValueError(), None, None, None, ValueError(), ValueError()):
        run(cb, o)
    m = cb.metrics()
    assert (m.total, m.failures) == (4, 2) and cb.state is State.CLOSED
    run(cb, ValueError())
    assert cb.state is State.OPEN


def test_decorator_fallback_and_context_manager(clock):
    cb = CircuitBreaker(name="d", tripper=FailureStreak(1), retry=Never(), clock=clock)

    @cb(fallback=lambda e: f"fallback after {type(e).__name__}")
    def f(x):
        raise ConnectionError(x)

    @cb
    def g(x):
        return x * 2

    assert f.__name__ == "f"
    assert f(1) == "fallback after ConnectionError"
    assert cb.state is State.OPEN
    assert f(1) == "fallback after CallNotPermittedError"
    with pytest.raises(CallNotPermittedError):
        g(2)
    cb.reset()
    assert g(2) == 4
    with pytest.raises(ConnectionError):
        with cb:
            raise ConnectionError()
    assert cb.state is State.OPEN
    with pytest.raises(TypeError):
        cb(asyncio.sleep)


def test_listener_errors_do_not_break_the_breaker(clock):
    class Boom(Listener):
        def __call__(self, signal):
            raise RuntimeError("listener bug")

    seen = []
    cb = CircuitBreaker(name="l", tripper=FailureStreak(1), clock=clock, listeners=[Boom(), seen.append])
    run(cb, ValueError())
    assert cb.state is State.OPEN and len(seen) == 1 and seen[0].timestamp == clock()


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_keep_invariants(seed):
    """Random interleavings of overlapping calls, outcomes and time never
    break the state machine: an open breaker refuses, half-open admits at
    most max_half_open_calls at once, transitions only follow the four
    edges, and the state always equals the last signal's new_state."""
    rng = random.Random(seed)
    t = [0.0]
    sigs: list[Signal] = []
    max_half = rng.randint(1, 4)
    cb = CircuitBreaker(
        name=f"p{seed}",
        window=rng.choice([CountWindow(size=rng.randint(1, 8)), TimeWindow(size=rng.randint(1, 5))]),
        tripper=rng.choice([
            FailureStreak(rng.randint(1, 3)),
            (Closed() & MinRequests(rng.randint(1, 5)) & FailureRate(0.5)) | (HalfOpened() & FailureRate(0.5)),
            MinRequests(2) & SlowRate(0.5, threshold=1.0),
        ]),
        retry=rng.choice([Cooldown(duration=rng.uniform(0, 3)), Backoff(initial=0.5, max_duration=4), Always()]),
        permit=rng.choice([All(), Random(ratio=0.5, rng=rng), RampUp(initial=0.2, duration=2, rng=rng)]),
        max_half_open_calls=max_half,
        clock=lambda: t[0],
        listeners=[sigs.append],
    )
    inflight: list[tuple[contextvars.Context, State, int]] = []  # (context, state at entry, phase)
    for _ in range(400):
        op = rng.random()
        if op < 0.5:
            before = cb.state
            ctx = contextvars.copy_context()
            try:
                ctx.run(cb.__enter__)
            except CallNotPermittedError as e:
                assert e.state in (State.OPEN, State.HALF_OPEN)
                continue
            assert before is not State.OPEN or (sigs and sigs[-1].new_state is State.HALF_OPEN), "an open breaker admitted a call"
            assert cb.state is not State.OPEN
            inflight.append((ctx, cb.state, len(sigs)))
            half = [x for x in inflight if x[1] is State.HALF_OPEN and x[2] == len(sigs)]
            assert len(half) <= max_half, "half-open admitted more than max_half_open_calls at once"
        elif op < 0.85 and inflight:
            ctx, _, _ = inflight.pop(rng.randrange(len(inflight)))
            t[0] += rng.choice([0.0, 0.1, 1.5])
            exc = ConnectionError() if rng.random() < 0.5 else None
            ctx.run(cb.__exit__, type(exc) if exc else None, exc, None)
        else:
            t[0] += rng.uniform(0, 2)
        assert cb.state is (sigs[-1].new_state if sigs else State.CLOSED)
    prev = State.CLOSED
    for s in sigs:
        assert s.old_state is prev and (s.old_state, s.new_state) in ALLOWED
        prev = s.new_state
    assert len({s.new_state for s in sigs}) >= 1 or not sigs


def test_hanging_upstream_in_half_open_admits_at_most_max_calls_threads(clock):
    """USERS.md §11: a hanging upstream during half-open gets no more than
    max_half_open_calls requests, however many threads try."""
    cb = CircuitBreaker(name="h", tripper=FailureStreak(1), retry=Cooldown(duration=1), permit=All(),
                        max_half_open_calls=3, clock=clock)
    run(cb, ValueError())
    clock.advance(1)
    hang = threading.Event()
    started = threading.Semaphore(0)
    results: list[str] = []

    def hanging():
        started.release()
        hang.wait(10)

    def worker():
        try:
            cb.call(hanging)
            results.append("ok")
        except CallNotPermittedError:
            results.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(30)]
    for th in threads:
        th.start()
    for _ in range(3):
        assert started.acquire(timeout=10)
    # Every thread that did not get a slot was refused; 3 are hanging.
    deadline = threading.Event()
    for _ in range(200):
        if len(results) == 27:
            break
        deadline.wait(0.01)
    assert results.count("refused") == 27 and cb.state is State.HALF_OPEN
    hang.set()
    for th in threads:
        th.join(10)
    assert results.count("ok") == 3 and cb.state is State.CLOSED


async def test_async_breaker(clock):
    sigs: list[Signal] = []
    async_seen: list[State] = []

    async def async_listener(sig: Signal) -> None:
        await asyncio.sleep(0)
        async_seen.append(sig.new_state)

    cb = AsyncCircuitBreaker(name="a", tripper=FailureStreak(2), retry=Cooldown(duration=5), permit=All(),
                             max_half_open_calls=2, clock=clock, listeners=[sigs.append, async_listener])

    @cb
    async def flaky(ok: bool) -> str:
        if not ok:
            raise ConnectionError("down")
        return "up"

    @cb(fallback=lambda e: "cached")
    async def with_fallback() -> str:
        raise ConnectionError("down")

    assert await flaky(True) == "up"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await flaky(False)
    assert cb.state is State.OPEN and async_seen == [State.OPEN]
    with pytest.raises(CallNotPermittedError):
        await flaky(True)
    assert await with_fallback() == "cached"

    # Hanging upstream in half-open: 2 admitted of 20 concurrent tasks.
    clock.advance(5)
    release = asyncio.Event()

    async def hang() -> str:
        await release.wait()
        return "done"

    tasks = [asyncio.create_task(cb.call(hang)) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert sum(t.done() for t in tasks) == 18
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("done") == 2
    assert sum(isinstance(r, CallNotPermittedError) for r in results) == 18
    assert cb.state is State.CLOSED

    async with cb:
        pass
    with pytest.raises(ConnectionError):
        async with cb:
            raise ConnectionError()
    with pytest.raises(TypeError):
        cb(lambda: None)
    assert [s.new_state for s in sigs] == [State.OPEN, State.HALF_OPEN, State.CLOSED]


async def test_async_cancellation_frees_half_open_slot(clock):
    cb = AsyncCircuitBreaker(name="c", tripper=FailureStreak(1), retry=Always(), permit=All(),
                             max_half_open_calls=1, clock=clock)
    with pytest.raises(ConnectionError):
        await cb.call(fail, ConnectionError())
    task = asyncio.create_task(cb.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    assert cb.state is State.HALF_OPEN
    with pytest.raises(CallNotPermittedError):
        await cb.call(asyncio.sleep, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await cb.call(asyncio.sleep, 0, "again") == "again"
    assert cb.state is State.CLOSED
