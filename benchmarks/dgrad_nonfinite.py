"""What conv2d_dgrad's look for NaN / Inf filters costs, and what the
tap-by-tap path (taken only for non-finite filters) costs, beside the
kernel alone, in one run (medians of --repeat calls, emulator by default).

    python benchmarks/dgrad_nonfinite.py [--device emu:0] [--batch 8] [--repeat 5]

Columns: the kernel called directly (no check), deepconv.ops.conv2d_dgrad
with finite filters (check + kernel), the check alone, and conv2d_dgrad
with one Inf tap (the tap-by-tap path), per VGG / AlexNet shape.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_time  # benchmarks/timing.py, beside this script

import deepconv
from deepconv.backend import backend_for
from deepconv.ops import conv2d_dgrad
from deepconv.ops.conv import _params, _workspace  # the op's own plumbing, for the bare kernel

SHAPES = {  # name: (x shape without N, w shape, stride, padding)
    "vgg_conv3_2@56": ((256, 56, 56), (256, 256, 3, 3), 1, 1),
    "vgg_conv5_2@14": ((512, 14, 14), (512, 512, 3, 3), 1, 1),
    "alexnet_conv2@27": ((96, 27, 27), (256, 96, 5, 5), 1, 2),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="emu:0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    dev = deepconv.device(args.device)
    be = backend_for(dev)
    rng = np.random.default_rng(0)
    print(f"{'shape':18} {'kernel s':>9} {'op s':>9} {'check s':>9} {'check %':>8} {'by taps s':>10}")
    for name, (x_chw, w_shape, stride, pad) in SHAPES.items():
        x_shape = (args.batch, *x_chw)
        w = deepconv.asarray(rng.standard_normal(w_shape).astype(np.float32), device=dev)
        y_shape = deepconv.ops.conv2d_output_shape(x_shape, w_shape, stride, pad)
        dy = deepconv.asarray(rng.standard_normal(y_shape).astype(np.float32), device=dev)
        out = be.empty(x_shape, np.float32, dev)
        params = _params(x_shape, w_shape, y_shape, (stride, stride), (pad, pad), 1)

        def kernel():
            with be.activate(dev):
                nbytes = be.module.conv2d_dgrad_workspace_bytes(params, "float32")
                _buf, ws, ws_bytes = _workspace(be, dev, nbytes)
                be.module.conv2d_dgrad(params, be.pointer(dy), be.pointer(w), be.pointer(out), ws,
                                       ws_bytes, "float32", be.stream_handle(dev))
            be.synchronize(dev)

        def op(weights=w):
            conv2d_dgrad(dy, weights, x_shape, stride=stride, padding=pad, out=out)
            be.synchronize(dev)

        def check():
            with be.activate(dev):
                bool(np.isfinite(w).all())

        inf = w.copy()
        inf[0, 0, 0, 0] = np.inf
        t_kernel = median_time(kernel, args.repeat)
        t_op = median_time(op, args.repeat)
        t_check = median_time(check, args.repeat)
        t_taps = median_time(lambda: op(inf), max(1, args.repeat // 2))
        print(f"{name:18} {t_kernel:9.4f} {t_op:9.4f} {t_check:9.5f} "
              f"{100 * t_check / t_kernel:7.2f}% {t_taps:10.4f}")


if __name__ == "__main__":
    main()
