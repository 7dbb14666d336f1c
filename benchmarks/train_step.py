"""Images per second of one SGD training step, deepconv beside PyTorch, in one run.

One step = forward, softmax cross-entropy, backward, SGD update (momentum
0.9, weight decay 5e-4), on a fixed random batch. Networks:

- ``vgg_small``: VGG-A's layout for 32x32 images at width 32 (channels
  32-64-128-256-256, so the 3x3 convolutions do nearly all the work), with
  Glorot's initialisation: VGG's std 0.1 makes this net's first loss ~560
  and every weight NaN by the third step, and a diverged net would time
  the NaN paths (conv2d_dgrad's per-tap fallback for non-finite filters)
  instead of a training step;
- ``digits_net``: ``deepconv train``'s default network (8x8 grey images).

PyTorch runs the same network (layer by layer, same shapes) on the CPU, or
on CUDA when deepconv runs on a GPU. deepconv runs with its process-wide
convolution algorithm (``--algorithm``, default auto). The ratio
deepconv / PyTorch images/s is printed last, per network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# numpy's OpenBLAS workers spin for a while after each numpy BLAS call and
# take a core from the emulator's workers; neither measurement uses numpy's
# BLAS (deepconv runs its own kernels, PyTorch links MKL), so one thread,
# set before numpy loads OpenBLAS. (The emulated step calls none, but a
# spinning pool left by anything before it would skew the deepconv column.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread setting above
from step_profile import print_profile, profile_step  # noqa: E402 - beside this script
from timing import median_time  # noqa: E402 - benchmarks/timing.py, beside this script

import deepconv
from deepconv import nn
from deepconv.models import digits_net, vgg_small

NETWORKS = {
    # name: (builder, input shape per image, default batch)
    "vgg_small": (lambda device: vgg_small("A", 32, 10, width=32, init="glorot", device=device),
                  (3, 32, 32), 16),
    "digits_net": (lambda device: digits_net(device=device), (1, 8, 8), 32),
}


def torch_mirror(torch, model):
    """The same layers in PyTorch (fresh weights: only the speed is compared)."""
    layers = []
    for _, layer in model.named_layers():
        if isinstance(layer, nn.Conv2d):
            layers.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                          layer.stride, layer.padding, groups=layer.groups,
                                          bias=layer.bias))
        elif isinstance(layer, nn.ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding,
                                             ceil_mode=layer.ceil_mode))
        elif isinstance(layer, nn.Flatten):
            layers.append(torch.nn.Flatten())
        elif isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias))
        elif isinstance(layer, nn.Dropout):
            layers.append(torch.nn.Dropout(layer.p))
        else:
            raise SystemExit(f"train_step: no PyTorch mirror for {type(layer).__name__}")
    return torch.nn.Sequential(*layers)


def deepconv_step(name, batch, device):
    build, shape, _ = NETWORKS[name]
    model = build(device)
    model.train()
    optimizer = deepconv.optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = nn.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = deepconv.asarray(rng.standard_normal((batch,) + shape, dtype=np.float32), device=device)
    y = deepconv.asarray(rng.integers(0, 10, batch), device=device)

    def step():
        loss = criterion.forward(model.forward(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        deepconv.synchronize(device)
        return float(loss)

    return model, criterion, optimizer, step


def torch_step(torch, model, name, batch, device_type):
    _, shape, _ = NETWORKS[name]
    dev = "cuda" if device_type == "cuda" else "cpu"
    net = torch_mirror(torch, model).to(dev).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch,) + shape, generator=gen).to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    loss_fn = torch.nn.CrossEntropyLoss()
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        sync()
        return float(loss.detach())

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda:0" if deepconv.cuda_available() else "emu:0"
    parser.add_argument("--device", default=default_device, help=f"default {default_device}")
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help=f"comma-separated subset of {','.join(NETWORKS)}")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per step (default: 16 for vgg_small, 32 for digits_net)")
    parser.add_argument("--algorithm", default="auto", choices=deepconv.ops.ALGORITHMS,
                        help="deepconv's convolution algorithm (set_conv_algorithm)")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--profile", action="store_true",
                        help="then profile deepconv's step: ms per kernel call, by layer and pass")
    args = parser.parse_args(argv)
    names = [n for n in args.networks.split(",") if n]
    unknown = set(names) - set(NETWORKS)
    if unknown or not names:
        parser.error(f"--networks: unknown network(s) {sorted(unknown)}; choose from "
                     f"{list(NETWORKS)}")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch: expected a positive int")
    if args.repeat < 1:
        parser.error("--repeat: expected a positive int")

    device = deepconv.device(args.device)
    # PyTorch's OpenMP threads must sleep between calls, or they take the
    # cores from the emulator's workers (see benchmarks/conv3x3.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch  # noqa: PLC0415 - optional
    except ImportError:
        torch = None
    deepconv.set_conv_algorithm(args.algorithm)
    print(f"deepconv {deepconv.__version__} on {device} (conv algorithm {args.algorithm}); "
          f"reference: {'PyTorch ' + torch.__version__ if torch else 'PyTorch not installed'}; "
          f"float32; one SGD step per measurement, median of {args.repeat}")
    results = {}
    for name in names:
        batch = args.batch or NETWORKS[name][2]
        model, criterion, optimizer, ours = deepconv_step(name, batch, device)
        row = {"batch": batch, "deepconv": batch / median_time(ours, args.repeat)}
        last_loss = ours()
        if not np.isfinite(last_loss):
            raise SystemExit(f"train_step: {name}'s loss became {last_loss}: the timings would "
                             "measure a diverged (non-finite) network")
        if torch is not None:
            theirs = torch_step(torch, model, name, batch, device.type)
            row["torch"] = batch / median_time(theirs, args.repeat)
            row["ratio_torch"] = row["deepconv"] / row["torch"]
        results[name] = row
        line = f"{name:11} batch {batch:3}: deepconv {row['deepconv']:8.1f} images/s"
        if "torch" in row:
            line += f", PyTorch {row['torch']:8.1f} images/s"
        print(line, flush=True)
        if args.profile:
            rows, total_ms = profile_step(model, criterion, optimizer, ours, device, args.repeat)
            torch_ms = 1e3 * batch / row["torch"] if "torch" in row else None
            print_profile(name, rows, total_ms, torch_ms)
    print()
    for name, row in results.items():
        if "ratio_torch" in row:
            print(f"{name}: deepconv reaches {row['ratio_torch']:.2f}x PyTorch's images/s "
                  f"(target for vgg_small >= 0.6)")
    if args.json:
        print(json.dumps({"device": str(device), "algorithm": args.algorithm, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
