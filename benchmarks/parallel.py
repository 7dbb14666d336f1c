"""Bytes communicated per training step when splitting VGG-16 (batch 256)
and AlexNet (batch 128) over 2 and 4 devices: data parallelism, model
parallelism and Krizhevsky's hybrid scheme (convolutional layers data
parallel, fully connected layers model parallel; "One weird trick for
parallelizing convolutional neural networks", 2014).

Three figures per case:

- closed form: :func:`deepconv.parallel.communication_cost`, from layer
  shapes (see :mod:`deepconv.parallel.placement` for the accounting);
- measured, full size: :func:`deepconv.transfer_stats` around the
  communication of one step at the real sizes, with the arithmetic left
  out (a full-size VGG-16 step at batch 256 would take hours on the
  emulator):
    data parallel: ``DataParallel.reduce_gradients`` +
    ``broadcast_parameters`` run for real over replicas of every parameter
    tensor of the model (one layer at a time, to bound memory);
    hybrid: the same for the conv layers (what ``Hybrid`` runs), plus the
    exchange functions that ``Hybrid.forward`` / ``backward`` call
    (``allgather``, ``gather``, ``scatter``, ``reduce_scatter``) in their
    order, on real-size activation buffers at the real batch;
    model parallel (AlexNet on 2 devices only, the one model-parallel
    executor deepconv has: ``alexnet(split=2, devices=...)``): a real
    forward + backward step of the full-size placed graph at batch 2,
    multiplied by 64 (its traffic is per-example activations only, so it
    scales exactly with the batch; tests/test_model_parallel.py checks the
    counter against the closed form at batches 1 and 2). Other
    model-parallel cases: closed form only.
- measured, real steps: whole training steps of small networks by the
  executors themselves (DataParallel, Hybrid, the placed AlexNet columns),
  input shards included, beside the closed form for that network.

Headline: hybrid / data parallel for VGG-16, 4 devices, batch 256 (the
target is <= 0.25), closed form and measured.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np

import deepconv
from deepconv.models import alexnet, alexnet_small, count_parameters, digits_net, vgg
from deepconv.nn import Conv2d, Linear, Sequential, SoftmaxCrossEntropy
from deepconv.optim import SGD
from deepconv.parallel import (DataParallel, Hybrid, communication_cost, data_parallel_step_bytes,
                               model_parallel_bytes, shard_sizes)
from deepconv.parallel.hybrid import allgather, gather, reduce_scatter, scatter

CASES = (("VGG-16", lambda: vgg("D", materialize=False), 256, 224),
         ("AlexNet", lambda: alexnet(materialize=False), 128, 227))
DEVICE_COUNTS = (2, 4)


def devices(count):
    return [f"emu:{d}" for d in range(count)]


def counted(run):
    """Bytes between devices while ``run()`` executes."""
    deepconv.reset_transfer_stats()
    run()
    moved = sum(deepconv.transfer_stats().values())
    deepconv.reset_transfer_stats()
    return moved


def closed_form_rows():
    rows = []
    for name, build, batch, size in CASES:
        model = build()
        for count in DEVICE_COUNTS:
            cost = communication_cost(model, batch, count, input_size=size)
            rows.append({"model": name, "params": count_parameters(model), "batch": batch,
                         "devices": count, "data_parallel_bytes": cost.data_parallel,
                         "model_parallel_bytes": cost.model_parallel,
                         "hybrid_conv_gradient_bytes": cost.hybrid_conv_gradients,
                         "hybrid_fc_activation_bytes": cost.hybrid_fc_activations,
                         "hybrid_bytes": cost.hybrid, "ratio": cost.ratio})
    return rows


# --- full size: the communication of one step, without the arithmetic ----------------


def replica_sync_bytes(model, count, kinds=(Conv2d, Linear)):
    """DataParallel's gradient gather + weight broadcast, run over replicas
    of each parameterised layer of ``model`` whose type is in ``kinds``."""
    total = 0
    for name, layer in model.named_layers():
        if not layer.parameter_shapes() or not isinstance(layer, kinds):
            continue
        one = copy.deepcopy(layer).reset_parameters(0)  # allocates its tensors on emu:0
        dp = DataParallel(Sequential((name.replace(".", "_"), one)), devices(count))
        total += counted(lambda: (dp.reduce_gradients(), dp.broadcast_parameters()))
    return total


def hybrid_exchange_bytes(model, batch, count):
    """Hybrid's activation exchange at full size: the calls of
    Hybrid.forward / backward, in order, on zero-filled buffers."""
    linears = [layer for _, layer in model.named_layers() if isinstance(layer, Linear)]
    devs = devices(count)
    rows = shard_sizes(batch, count)
    units = [shard_sizes(layer.out_features, count) for layer in linears]

    def step():
        # the arrays each call returns would feed the skipped arithmetic
        feats = [deepconv.zeros((n, linears[0].in_features), device=d) for n, d in zip(rows, devs)]
        allgather(feats, 0, devs)
        for i in range(len(linears)):
            outs = [deepconv.zeros((batch, u), device=d) for u, d in zip(units[i], devs)]
            if i == len(linears) - 1:
                gather(outs, 1, devs[0])
            else:
                allgather(outs, 1, devs)
        scatter(deepconv.zeros((batch, linears[-1].out_features), device=devs[0]), units[-1], 1, devs)
        for i in reversed(range(len(linears))):
            partials = [deepconv.zeros((batch, linears[i].in_features), device=d) for d in devs]
            reduce_scatter(partials, rows if i == 0 else units[i - 1], 0 if i == 0 else 1, devs)
    return counted(step)


def alexnet_columns_bytes(batch=2, full_batch=128):
    """A real forward + backward of the full-size AlexNet split over two
    devices at ``batch``, scaled to ``full_batch``."""
    model = alexnet(split=2, devices=("emu:0", "emu:1"), seed=0)
    rng = np.random.default_rng(0)
    x = deepconv.asarray(rng.standard_normal((batch, 3, 227, 227)).astype(np.float32))
    labels = np.arange(batch, dtype=np.int32)
    xent = SoftmaxCrossEntropy()

    def step():
        xent.forward(model.forward(x), labels)
        model.backward(xent.backward())
    return counted(step) * full_batch // batch


def measured_full_size_rows(closed, quick):
    rows = []
    for name, build, batch, size in CASES:
        model = build()
        for count in DEVICE_COUNTS:
            ref = next(r for r in closed if r["model"] == name and r["devices"] == count)
            row = {"model": name, "batch": batch, "devices": count}
            conv = replica_sync_bytes(model, count, kinds=(Conv2d,))
            row["hybrid_bytes"] = conv + hybrid_exchange_bytes(model, batch, count)
            row["data_parallel_bytes"] = (None if quick else
                                          conv + replica_sync_bytes(model, count, kinds=(Linear,)))
            row["model_parallel_bytes"] = (alexnet_columns_bytes() if name == "AlexNet"
                                           and count == 2 and not quick else None)
            dp = row["data_parallel_bytes"]
            row["ratio"] = row["hybrid_bytes"] / dp if dp else None
            row["matches_closed_form"] = all(
                row[k] == ref[k] for k in ("hybrid_bytes", "data_parallel_bytes",
                                           "model_parallel_bytes") if row[k] is not None)
            rows.append(row)
    return rows


# --- small networks: whole steps by the executors ---------------------------------------


def small_step_rows(batch=8):
    rng = np.random.default_rng(0)
    rows = []
    for count in DEVICE_COUNTS:
        # data parallel: digits_net on 8x8 images; shards leave emu:0
        x = deepconv.asarray(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32))
        y = deepconv.asarray(rng.integers(0, 10, batch).astype(np.int32))
        dp = DataParallel(lambda dev: digits_net(width=4, device=dev), devices(count))
        opt = SGD(dp.module, lr=0.01)
        params = count_parameters(dp.module)
        rows.append({"scheme": "data parallel", "model": "digits_net(width=4)", "batch": batch,
                     "devices": count, "measured_bytes": counted(lambda: dp.train_step(x, y, opt)),
                     "closed_form_bytes": data_parallel_step_bytes(
                         params, count, 4, batch=batch, example_bytes=x[0].nbytes + y.itemsize)})
        # hybrid: one-tower alexnet_small on 32x32 images
        x = deepconv.asarray(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
        hy = Hybrid(alexnet_small(input_size=32, fc_width=64), devices(count))
        opt = SGD(hy, lr=0.01)
        rows.append({"scheme": "hybrid", "model": "alexnet_small", "batch": batch, "devices": count,
                     "measured_bytes": counted(lambda: hy.train_step(x, y, opt)),
                     "closed_form_bytes": hy.step_bytes(batch, x[0].nbytes)})
    # model parallel: alexnet_small's two columns on two devices
    model = alexnet_small(input_size=32, fc_width=64, split=2).place(
        {"column0": "emu:0", "column1": "emu:1", "classifier": "emu:0"})
    opt, xent = SGD(model, lr=0.01), SoftmaxCrossEntropy()

    def step():
        xent.forward(model.forward(x), y)
        model.backward(xent.backward())
        opt.step()
    rows.append({"scheme": "model parallel", "model": "alexnet_small(split=2)", "batch": batch,
                 "devices": 2, "measured_bytes": counted(step),
                 "closed_form_bytes": model_parallel_bytes(
                     alexnet_small(input_size=32, fc_width=64, materialize=False),
                     x.shape, 2)})
    return rows


# --- output -----------------------------------------------------------------------------


def mb(n):
    return f"{n / 1e6:10.1f}" if n is not None else f"{'-':>10}"


def print_tables(closed, full, small):
    print("Closed form: bytes between devices per training step (float32; MB = 1e6 bytes)")
    print(f"{'model':8} {'params':>11} {'batch':>5} {'dev':>3} {'data par.':>10} {'model par.':>10} "
          f"{'hybrid':>10} {'(conv grads':>11} {'+ FC acts)':>10} {'hybrid/dp':>9}")
    for r in closed:
        print(f"{r['model']:8} {r['params']:11,d} {r['batch']:5d} {r['devices']:3d} "
              f"{mb(r['data_parallel_bytes'])} {mb(r['model_parallel_bytes'])} "
              f"{mb(r['hybrid_bytes'])} {mb(r['hybrid_conv_gradient_bytes']):>11} "
              f"{mb(r['hybrid_fc_activation_bytes'])} {r['ratio']:9.3f}")
    print()
    print("Measured, full size: transfer_stats() around one step's communication at the real")
    print("sizes, arithmetic left out (see the module docstring); '-' = not measured")
    print(f"{'model':8} {'batch':>5} {'dev':>3} {'data par.':>10} {'model par.':>10} {'hybrid':>10} "
          f"{'hybrid/dp':>9}  = closed form")
    for r in full:
        ratio = f"{r['ratio']:9.3f}" if r["ratio"] is not None else f"{'-':>9}"
        print(f"{r['model']:8} {r['batch']:5d} {r['devices']:3d} {mb(r['data_parallel_bytes'])} "
              f"{mb(r['model_parallel_bytes'])} {mb(r['hybrid_bytes'])} {ratio}  "
              f"{'yes' if r['matches_closed_form'] else 'NO'}")
    print()
    print("Measured, whole training steps of small networks by the executors (bytes)")
    print(f"{'scheme':15} {'model':23} {'batch':>5} {'dev':>3} {'measured':>10} {'closed form':>11}")
    for r in small:
        print(f"{r['scheme']:15} {r['model']:23} {r['batch']:5d} {r['devices']:3d} "
              f"{r['measured_bytes']:10d} {r['closed_form_bytes']:11d}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="also print one JSON line of results")
    parser.add_argument("--quick", action="store_true",
                        help="skip the slow full-size measurements (data parallel replicas of "
                             "every layer, the full AlexNet columns step)")
    args = parser.parse_args(argv)
    closed = closed_form_rows()
    full = measured_full_size_rows(closed, args.quick)
    small = small_step_rows()
    print_tables(closed, full, small)
    headline = next(r["ratio"] for r in closed if r["model"] == "VGG-16" and r["devices"] == 4)
    measured = next(r["ratio"] for r in full if r["model"] == "VGG-16" and r["devices"] == 4)
    print(f"\nVGG-16, 4 devices, batch 256: hybrid / data parallel = {headline:.3f} closed form, "
          + (f"{measured:.3f} measured" if measured is not None else "measured: skipped (--quick)")
          + " (target <= 0.25)")
    if args.json:
        print(json.dumps({"closed_form": closed, "measured_full_size": full, "measured": small,
                          "vgg16_4dev_hybrid_over_data_parallel": headline,
                          "vgg16_4dev_measured_ratio": measured}))


if __name__ == "__main__":
    main()
