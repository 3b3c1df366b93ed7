"""A circuit breaker for Redis: when it fails or hangs, stop asking it for a while.

A Redis that is down answers "connection refused" at once, but one that hangs (frozen, overloaded,
a half-open network path) lets every command wait for its timeout. Intake must not pay that wait on
every request. The breaker opens after a failure, and callers then fail open (no rate limit, the job
left for the sweep) without touching Redis; after `open_seconds` one caller probes again while the
others keep failing open, and a success closes it. A call still unanswered after `slow_seconds`
counts as a hang already: the requests that come meanwhile do not pile up behind it.
"""

import itertools
import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class CircuitBreaker:
    name: str
    open_seconds: float = 5.0
    slow_seconds: float = 0.05
    _open_until: float = field(default=0.0, init=False)  # 0: closed
    _in_flight: dict[int, float] = field(default_factory=dict, init=False)  # call -> when it started
    _numbers: itertools.count = field(default_factory=itertools.count, init=False)

    def allow(self) -> int | None:
        """A call number when the caller may ask Redis now; None: fail open without asking."""
        now = time.monotonic()
        if self._open_until:
            if now < self._open_until:
                return None
            # This caller probes; the others keep failing open until it has an answer, or until it
            # has taken another `open_seconds` (a probe that was cancelled never reports back).
            self._open_until = now + self.open_seconds
        elif self._in_flight and now - min(self._in_flight.values()) > self.slow_seconds:
            return None
        number = next(self._numbers)
        self._in_flight[number] = now
        return number

    def done(self, call: int) -> None:
        """The call is over, however it ended (call it in a `finally`: a cancelled call never fails)."""
        self._in_flight.pop(call, None)

    def succeeded(self) -> None:
        if self._open_until:
            log.warning("%s: Redis answers again, circuit closed", self.name)
            self._open_until = 0.0

    def failed(self, exc: BaseException) -> None:
        if not self._open_until:
            log.warning(
                "%s: Redis unavailable (%s), not asking it for %.0f s", self.name, type(exc).__name__, self.open_seconds
            )
        self._open_until = time.monotonic() + self.open_seconds

    @property
    def is_open(self) -> bool:
        return self._open_until != 0.0
