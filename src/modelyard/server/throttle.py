"""Throttling of failed authentication per client address: sign-ins and bearer tokens.

Each failure (an unknown, revoked or expired token, at /ui/login or on the
API) is a hit in a moving window per address, kept in memory by the `limits`
library. An address that used up its window (default 10 failures a minute)
is answered 429 with Retry-After for everything that needs authentication,
a right token included: telling right from wrong while throttled would keep
the guessing going. Supervisor reports authenticate with their attempt's own
token and are not throttled (a loaded machine must never silence a job).

The limiter and its storage (and the ~0.1 s import of `limits`) start with
the first failure: a server nobody mistypes a token against never pays it.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

from modelyard.errors import ErrorCode, ModelyardError


class Throttled(ModelyardError):
    """Too many failed attempts from one address; ``retry_after`` seconds until the next may be tried."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(ErrorCode.THROTTLED,
                         f"too many failed sign-ins or bad tokens from this address; try again in {retry_after} s")
        self.retry_after = retry_after


RATE = re.compile(r"^\s*\d+\s*/\s*(\d+\s*)?(second|minute|hour|day)s?\s*$")


class FailureThrottle:
    def __init__(self, rate: str = "10/minute") -> None:
        if not RATE.match(rate):
            raise ModelyardError(ErrorCode.INVALID, f"not a rate: {rate!r} (use e.g. 10/minute, 50/hour)",
                                 field="MODELYARD_AUTH_FAILURES")
        self._rate = rate
        self._lock = threading.Lock()
        self._limiter: Any = None  # a limits.strategies.MovingWindowRateLimiter, made by the first failure
        self._item: Any = None

    def check(self, address: str) -> None:
        """Raise ``Throttled`` when ``address`` has used up its failures."""
        limiter = self._limiter
        if limiter is None or limiter.test(self._item, address):
            return
        reset = limiter.get_window_stats(self._item, address).reset_time
        raise Throttled(max(1, math.ceil(reset - time.time())))

    def failed(self, address: str) -> None:
        self._ensure().hit(self._item, address)

    def _ensure(self) -> Any:
        with self._lock:
            if self._limiter is None:
                from limits import parse, storage, strategies

                self._item = parse(self._rate)
                self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
            return self._limiter
