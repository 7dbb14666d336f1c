"""The benchmarks' timer: the median wall time of a call (machines are
noisy; a median of several runs, after a warm-up, is what we compare)."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeat, min_seconds=0.0):
    """Median wall time of fn() over at least `repeat` runs, after one warm-up
    call (buffers, workspaces, first-touch pages); more runs, up to 50 in all,
    while they add up to less than `min_seconds`."""
    fn()
    times = []
    while len(times) < repeat or (sum(times) < min_seconds and len(times) < 50):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
