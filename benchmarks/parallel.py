"""Bytes communicated per training step when splitting VGG-16 and AlexNet
over several devices: data parallelism beside Krizhevsky's hybrid scheme
(convolutional layers data parallel, fully connected layers model parallel;
"One weird trick for parallelizing convolutional neural networks", 2014).

The full-size figures are closed forms from parameter shapes (models built
with ``materialize=False``; see :mod:`deepconv.parallel.placement` for the
accounting). Beside them, a small network trained one step by the
in-process :class:`~deepconv.parallel.DataParallel` on emulated devices,
with the bytes :func:`deepconv.transfer_stats` counted next to the closed
form for that network.

Headline: hybrid / data parallel for VGG-16, 4 devices, batch 256 (the
target is <= 0.25).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import deepconv
from deepconv.models import alexnet, count_parameters, digits_net, vgg
from deepconv.optim import SGD
from deepconv.parallel import DataParallel, communication_cost, data_parallel_step_bytes

CASES = (("VGG-16", lambda: vgg("D", materialize=False), 256),
         ("AlexNet", lambda: alexnet(materialize=False), 128))
DEVICE_COUNTS = (2, 4)


def closed_form_rows():
    rows = []
    for name, build, batch in CASES:
        model = build()
        for devices in DEVICE_COUNTS:
            cost = communication_cost(model, batch, devices)
            rows.append({"model": name, "params": count_parameters(model), "batch": batch,
                         "devices": devices, "data_parallel_bytes": cost.data_parallel,
                         "hybrid_conv_gradient_bytes": cost.hybrid_conv_gradients,
                         "hybrid_fc_activation_bytes": cost.hybrid_fc_activations,
                         "hybrid_bytes": cost.hybrid, "ratio": cost.ratio})
    return rows


def measured_rows(batch=8, width=4):
    """One DataParallel step of digits_net (8x8 images) on 2 and 4 emulated
    devices; input shards start on emu:0, so they are counted too."""
    rng = np.random.default_rng(0)
    x = deepconv.asarray(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32))
    y = deepconv.asarray(rng.integers(0, 10, batch).astype(np.int32))
    example_bytes = x[0].nbytes + y.itemsize
    rows = []
    for devices in DEVICE_COUNTS:
        dp = DataParallel(lambda dev: digits_net(width=width, device=dev),
                          [f"emu:{d}" for d in range(devices)])
        opt = SGD(dp.module, lr=0.01)
        deepconv.reset_transfer_stats()
        dp.train_step(x, y, opt)
        measured = sum(deepconv.transfer_stats().values())
        params = count_parameters(dp.module)
        rows.append({"model": f"digits_net(width={width})", "params": params, "batch": batch,
                     "devices": devices, "measured_bytes": measured,
                     "closed_form_bytes": data_parallel_step_bytes(
                         params, devices, 4, batch=batch, example_bytes=example_bytes)})
    return rows


def mb(n):
    return f"{n / 1e6:10.1f}"


def print_tables(closed, measured):
    print("Bytes between devices per training step (float32; MB = 1e6 bytes)")
    print(f"{'model':8} {'params':>11} {'batch':>5} {'dev':>3} {'data par. MB':>12} "
          f"{'hybrid MB':>10} {'(conv grads':>11} {'+ FC acts)':>10} {'hybrid/dp':>9}")
    for r in closed:
        print(f"{r['model']:8} {r['params']:11,d} {r['batch']:5d} {r['devices']:3d} "
              f"{mb(r['data_parallel_bytes']):>12} {mb(r['hybrid_bytes'])} "
              f"{mb(r['hybrid_conv_gradient_bytes']):>11} {mb(r['hybrid_fc_activation_bytes'])} "
              f"{r['ratio']:9.3f}")
    print()
    print("Measured by deepconv.transfer_stats() (DataParallel, one step, emulated devices)")
    print(f"{'model':22} {'params':>7} {'batch':>5} {'dev':>3} {'measured B':>11} {'closed form B':>13}")
    for r in measured:
        print(f"{r['model']:22} {r['params']:7d} {r['batch']:5d} {r['devices']:3d} "
              f"{r['measured_bytes']:11d} {r['closed_form_bytes']:13d}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = parser.parse_args(argv)
    closed, measured = closed_form_rows(), measured_rows()
    print_tables(closed, measured)
    headline = next(r["ratio"] for r in closed if r["model"] == "VGG-16" and r["devices"] == 4)
    print(f"\nVGG-16, 4 devices, batch 256: hybrid / data parallel = {headline:.3f} (target <= 0.25)")
    if args.json:
        print(json.dumps({"closed_form": closed, "measured": measured,
                          "vgg16_4dev_hybrid_over_data_parallel": headline}))


if __name__ == "__main__":
    main()
