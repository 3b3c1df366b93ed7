"""The Redis circuit breaker as a pure rule: when callers may ask Redis, and when they fail open."""

import pytest

from service import breaker as breaker_module
from service.breaker import CircuitBreaker


class Clock:
    """The breaker's clock, moved by the test: the rule is checked exactly, however long the machine
    (busy with other test processes under pytest-xdist) takes between two lines. Real sleeps of a few
    tens of ms against windows of a few tens of ms fail whenever a line waits for the CPU that long."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(breaker_module, "time", clock)
    return clock


def test_a_failure_opens_the_circuit_and_after_a_while_one_caller_probes(clock):
    breaker = CircuitBreaker("test", open_seconds=0.05, slow_seconds=10)
    call = breaker.allow()
    assert call is not None
    breaker.failed(TimeoutError())
    breaker.done(call)
    assert breaker.is_open and breaker.allow() is None  # nobody waits on a Redis known to hang

    clock.sleep(0.06)
    probe = breaker.allow()
    assert probe is not None and breaker.allow() is None  # one probe, the others keep failing open
    breaker.succeeded()
    breaker.done(probe)
    assert not breaker.is_open and breaker.allow() is not None


def test_a_call_unanswered_for_too_long_keeps_others_from_piling_up_behind_it(clock):
    breaker = CircuitBreaker("test", open_seconds=5, slow_seconds=0.02)
    hung = breaker.allow()
    quick = breaker.allow()
    assert quick is not None  # the first is still within its time: others may ask too
    breaker.succeeded()
    breaker.done(quick)
    clock.sleep(0.03)
    assert breaker.allow() is None
    breaker.done(hung)  # cancelled, say: it never reports success or failure
    assert breaker.allow() is not None


def test_a_cancelled_probe_does_not_leave_the_circuit_open_for_ever(clock):
    breaker = CircuitBreaker("test", open_seconds=0.03, slow_seconds=10)
    breaker.failed(ConnectionError())
    clock.sleep(0.04)
    probe = breaker.allow()
    breaker.done(probe)  # the probe was cancelled: neither succeeded nor failed
    assert breaker.allow() is None
    clock.sleep(0.04)
    assert breaker.allow() is not None  # another probe after another while
