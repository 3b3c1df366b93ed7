"""The Redis circuit breaker as a pure rule: when callers may ask Redis, and when they fail open."""

import time

from service.breaker import CircuitBreaker


def test_a_failure_opens_the_circuit_and_after_a_while_one_caller_probes():
    breaker = CircuitBreaker("test", open_seconds=0.05, slow_seconds=10)
    call = breaker.allow()
    assert call is not None
    breaker.failed(TimeoutError())
    breaker.done(call)
    assert breaker.is_open and breaker.allow() is None  # nobody waits on a Redis known to hang

    time.sleep(0.06)
    probe = breaker.allow()
    assert probe is not None and breaker.allow() is None  # one probe, the others keep failing open
    breaker.succeeded()
    breaker.done(probe)
    assert not breaker.is_open and breaker.allow() is not None


def test_a_call_unanswered_for_too_long_keeps_others_from_piling_up_behind_it():
    breaker = CircuitBreaker("test", open_seconds=5, slow_seconds=0.02)
    hung = breaker.allow()
    quick = breaker.allow()
    assert quick is not None  # the first is still within its time: others may ask too
    breaker.succeeded()
    breaker.done(quick)
    time.sleep(0.03)
    assert breaker.allow() is None
    breaker.done(hung)  # cancelled, say: it never reports success or failure
    assert breaker.allow() is not None


def test_a_cancelled_probe_does_not_leave_the_circuit_open_for_ever():
    breaker = CircuitBreaker("test", open_seconds=0.03, slow_seconds=10)
    breaker.failed(ConnectionError())
    time.sleep(0.04)
    probe = breaker.allow()
    breaker.done(probe)  # the probe was cancelled: neither succeeded nor failed
    assert breaker.allow() is None
    time.sleep(0.04)
    assert breaker.allow() is not None  # another probe after another while
