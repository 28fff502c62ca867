"""The token buckets behind the run PAR's 429, with a clock the test moves by hand."""

from __future__ import annotations

import pytest

from jobsheet.api.rate_limit import TokenBuckets, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_then_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(burst=3, per_minute=6, clock=clock)
    assert [buckets.take("job-a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("job-a")
    assert wait == pytest.approx(10.0)  # one call per 10 s at 6 a minute
    assert retry_after_header(wait) == "10"
    assert buckets.take("job-b") == 0.0  # keys are independent
    clock.now += 10.0
    assert buckets.take("job-a") == 0.0
    assert buckets.take("job-a") > 0.0
    clock.now += 3600.0  # refills up to the burst, no further
    assert [buckets.take("job-a") for _ in range(4)][-1] > 0.0


def test_least_recently_used_keys_are_forgotten() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(burst=1, per_minute=1, max_keys=2, clock=clock)
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")  # "a" is forgotten, so it starts with a full bucket again
    assert buckets.take("a") == 0.0
    assert buckets.take("c") > 0.0


def test_retry_after_is_at_least_one_second() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_peek_tells_without_spending() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(burst=2, per_minute=6, clock=clock)
    assert buckets.peek("client") == 0.0
    assert buckets.peek("client") == 0.0  # peeking spends nothing
    assert [buckets.take("client") for _ in range(2)] == [0.0, 0.0]
    assert buckets.peek("client") == pytest.approx(10.0)
    clock.now += 10.0
    assert buckets.peek("client") == 0.0
