"""What the CPU emulator costs, in one run (DESIGN.md §3):

1. a __syncthreads per emulated thread, in ns: a selftest kernel doing
   ITERS rounds of a shared-memory update at 256 threads/block with a
   barrier after each round, minus the same kernel without barriers (which
   the emulator runs as a plain loop, no fibers);
2. ReLU forward (float32) through deepconv._emu.relu_fprop, beside
   numpy.maximum(x, 0, out=y) on the same arrays, in GB/s (bytes read +
   written) and elements/s, with the emulator/numpy ratio.

Timings are the median of repeated runs after a warm-up. Usage:
    python benchmarks/emulator.py [--json] [--repeat N]
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from deepconv import _emu, _emu_selftest as selftest

BARRIER_THREADS = 256
BARRIER_BLOCKS = 8
BARRIER_ITERS = 200
RELU_SIZES = (100_000, 1_000_000, 10_000_000)


def median_seconds(fn, repeat, min_total=0.2):
    fn()  # warm-up: first-touch pages, worker threads, fiber stacks
    times = []
    while len(times) < repeat or sum(times) < min_total:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= 50 * repeat:
            break
    return statistics.median(times)


def barrier_cost(workers, repeat):
    """ns per barrier per emulated thread, with `workers` OS threads."""
    _emu.set_num_threads(workers)
    out = np.zeros(BARRIER_BLOCKS * BARRIER_THREADS, np.float32)

    def run(barriers):
        return lambda: selftest.barrier_loop(out.ctypes.data, BARRIER_ITERS, barriers,
                                             BARRIER_BLOCKS, BARRIER_THREADS)

    with_barriers = median_seconds(run(True), repeat)
    baseline = median_seconds(run(False), repeat)
    arrivals = BARRIER_ITERS * BARRIER_BLOCKS * BARRIER_THREADS
    return {
        "workers": _emu.num_threads(),
        "threads_per_block": BARRIER_THREADS,
        "blocks": BARRIER_BLOCKS,
        "barriers_per_thread": BARRIER_ITERS,
        "with_barriers_s": with_barriers,
        "without_barriers_s": baseline,
        "ns_per_barrier_per_thread": (with_barriers - baseline) / arrivals * 1e9,
    }


def relu_throughput(n, repeat):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    emu_s = median_seconds(lambda: _emu.relu_fprop(x.ctypes.data, y.ctypes.data, n, "float32"), repeat)
    expected = np.maximum(x, 0)
    assert np.array_equal(y, expected), "emulated relu disagrees with numpy"
    numpy_s = median_seconds(lambda: np.maximum(x, 0, out=y), repeat)
    nbytes = 2 * n * x.itemsize  # read x, write y
    return {
        "n": n,
        "emu_s": emu_s,
        "emu_gb_per_s": nbytes / emu_s / 1e9,
        "emu_elements_per_s": n / emu_s,
        "numpy_s": numpy_s,
        "numpy_gb_per_s": nbytes / numpy_s / 1e9,
        "numpy_elements_per_s": n / numpy_s,
        "emu_over_numpy": numpy_s / emu_s,  # throughput ratio: 1.0 = as fast as numpy
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median)")
    args = parser.parse_args()

    saved = _emu.settings()
    try:
        _emu.set_race_check(False, 0)
        barrier = [barrier_cost(1, args.repeat), barrier_cost(0, args.repeat)]
    finally:
        _emu.set_num_threads(saved["threads"])
    relu = [relu_throughput(n, args.repeat) for n in RELU_SIZES]
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "emulator": _emu.settings(), "numpy": np.__version__},
        "barrier": barrier,
        "relu_fprop_float32": relu,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return

    s = result["machine"]["emulator"]
    print(f"emulator: {s['threads']} workers, context switch: {s['context_switch']}, "
          f"{os.cpu_count()} cores")
    print(f"\n__syncthreads cost ({BARRIER_THREADS} threads/block, {BARRIER_BLOCKS} blocks, "
          f"{BARRIER_ITERS} barriers/thread)")
    print(f"{'workers':>8} {'with (ms)':>10} {'without (ms)':>13} {'ns/barrier/thread':>18}")
    for b in barrier:
        print(f"{b['workers']:>8} {b['with_barriers_s'] * 1e3:>10.2f} "
              f"{b['without_barriers_s'] * 1e3:>13.2f} {b['ns_per_barrier_per_thread']:>18.1f}")
    print("\nrelu_fprop float32 (emulator vs numpy.maximum(x, 0, out=y))")
    print(f"{'n':>10} {'emu GB/s':>9} {'emu Gelem/s':>12} {'numpy GB/s':>11} "
          f"{'numpy Gelem/s':>14} {'emu/numpy':>10}")
    for r in relu:
        print(f"{r['n']:>10} {r['emu_gb_per_s']:>9.2f} {r['emu_elements_per_s'] / 1e9:>12.3f} "
              f"{r['numpy_gb_per_s']:>11.2f} {r['numpy_elements_per_s'] / 1e9:>14.3f} "
              f"{r['emu_over_numpy']:>10.2f}")


if __name__ == "__main__":
    main()
