"""The shared retry delay: capped, jittered, widening, and safe after any number of failures."""

from __future__ import annotations

import math

import pytest

from shared.backoff import Backoff


class FakeClock:
    """Time that moves only when a retry loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_hundred_thousand_failures_stay_within_the_cap_and_never_overflow() -> None:
    """100,000 failed attempts on a fake clock: every delay is finite, in [0, cap], jittered."""
    clock = FakeClock()
    backoff = Backoff(base=0.1, cap=10.0)
    delays = []
    for _ in range(100_000):
        delay = backoff.next_delay()
        clock.sleep(delay)
        delays.append(delay)
    assert all(math.isfinite(d) and 0.0 <= d <= 10.0 for d in delays)
    late = delays[1000:]
    assert max(late) > 9.0 and min(late) < 1.0  # full jitter over the whole capped window
    assert 0.25 * 10.0 * len(delays) < clock.now <= 10.0 * len(delays)


def test_the_window_widens_from_base_and_reset_starts_over() -> None:
    """Attempt n waits at most base*2**(n-1); after reset the first window is base again."""
    backoff = Backoff(base=0.5, cap=100.0)
    for n in range(1, 8):
        assert backoff.next_delay() <= 0.5 * 2 ** (n - 1)
    backoff.reset()
    assert all(Backoff(base=0.5, cap=100.0).next_delay() <= 0.5 for _ in range(200))
    assert backoff.next_delay() <= 0.5


def test_a_tiny_base_under_a_huge_cap_still_saturates_at_the_cap() -> None:
    """Even with base/cap far apart the window reaches the cap instead of overflowing."""
    backoff = Backoff(base=1e-9, cap=1e9)
    delays = [backoff.next_delay() for _ in range(5_000)]
    assert all(0.0 <= d <= 1e9 for d in delays)
    assert max(delays[-1000:]) > 1e8


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (0.1, math.inf), (-1.0, 1.0)])
def test_nonsense_parameters_are_refused_with_a_clear_error(base: float, cap: float) -> None:
    """A zero, negative or infinite window is a ValueError naming base and cap."""
    with pytest.raises(ValueError, match="base"):
        Backoff(base=base, cap=cap)
