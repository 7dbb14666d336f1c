"""deepconv's 3x3 convolutions beside a reference, in GFLOP/s, in one run.

Shapes: every distinct 3x3 layer of VGG-16 at 224x224 (``--set vgg224``) and
the same network sized for 32x32 images (``--set cifar``); all three passes
(fprop, dgrad, wgrad), batch settable.

- On the emulator (``--device emu:0``, the default without a GPU) deepconv
  runs beside PyTorch CPU (oneDNN; if torch is installed) and numpy
  im2col + matmul, on the same arrays. The headline is the median, over the
  shapes, of deepconv's fprop GFLOP/s (algorithm "auto", what a user gets)
  divided by PyTorch CPU's.
- deepconv runs once per algorithm (``--algorithms``, default auto,
  implicit_gemm and winograd, side by side); the "auto" column says which
  variant auto chose (e.g. winograd_4x4, implicit_gemm_3x3).
- On a GPU (``--device cuda:0``) deepconv runs beside cuDNN through PyTorch
  (if a CUDA build of torch is installed).

Every deepconv result is checked against the reference before it is timed.
FLOPs per pass: 2 * N * K * P * Q * C * R * S, those of direct convolution
whatever the algorithm (Winograd does fewer), so ratios stay comparable.

``--precision tf32`` runs deepconv with ``deepconv.set_conv_precision("tf32")``
(tensor cores) beside PyTorch with ``torch.backends.cudnn.allow_tf32 = True``,
and ``fp32`` (the default) both without TF32: like against like.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

# numpy's OpenBLAS threads spin for a while after each call (the numpy
# reference, and the check of every result against it), taking one of the
# cores from the emulator's workers timed next: deepconv measured at half
# its speed right after a numpy call (fprop 102 against 153 GFLOP/s, same
# kernel, 2 cores). Like PyTorch's OMP_WAIT_POLICY below, they must sleep;
# read once, when numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402 - after the environment it reads
from timing import median_time  # benchmarks/timing.py, beside this script

import deepconv
from deepconv import ops

# (C, K, H) of each distinct 3x3 stride-1 pad-1 layer of VGG-16 (conv1_1 ... conv5_3).
VGG224 = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
          (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 14)]
CIFAR = [(3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8),
         (256, 256, 8), (256, 512, 4), (512, 512, 4), (512, 512, 2)]
PASSES = ("fprop", "dgrad", "wgrad")
ALGORITHMS = ("auto", "implicit_gemm", "winograd")


def flops(n, c, k, h):
    return 2.0 * n * k * h * h * c * 9


# ---- references --------------------------------------------------------------------------------


def im2col(x):
    """(N, C, H, W) -> (N*H*W, C*9) for a 3x3 window, stride 1, pad 1."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def numpy_fprop(x, w):
    n, _, h, width = x.shape
    k = w.shape[0]
    y = im2col(x) @ w.reshape(k, -1).T
    return np.ascontiguousarray(y.reshape(n, h, width, k).transpose(0, 3, 1, 2))


def numpy_dgrad(dy, w):
    n, k, h, width = dy.shape
    c = w.shape[1]
    cols = dy.transpose(0, 2, 3, 1).reshape(-1, k) @ w.reshape(k, -1)  # (N*H*W, C*9)
    cols = cols.reshape(n, h, width, c, 3, 3)
    dx = np.zeros((n, c, h + 2, width + 2), dy.dtype)
    for r in range(3):
        for s in range(3):
            dx[:, :, r:r + h, s:s + width] += cols[:, :, :, :, r, s].transpose(0, 3, 1, 2)
    return dx[:, :, 1:-1, 1:-1]


def numpy_wgrad(x, dy):
    k = dy.shape[1]
    dw = dy.transpose(1, 0, 2, 3).reshape(k, -1) @ im2col(x)
    return dw.reshape(k, x.shape[1], 3, 3)


class TorchReference:
    """torch.nn.functional on the given device, or None when torch is absent."""

    def __init__(self, device):
        # PyTorch's OpenMP threads spin after each call by default, taking the
        # cores from the emulator's workers that run next in this process
        # (deepconv measured at about half its speed); they must sleep. Set
        # before torch loads its OpenMP runtime, which reads it once.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch  # noqa: PLC0415 - optional

        self.torch = torch
        self.device = device
        self.name = f"PyTorch {torch.__version__} " + ("cuDNN" if device == "cuda" else "CPU")

    def tensor(self, array):
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def passes(self, x, w, dy):
        t = self.torch
        F = t.nn.functional
        tx, tw, tdy = self.tensor(x), self.tensor(w), self.tensor(dy)
        sync = t.cuda.synchronize if self.device == "cuda" else (lambda: None)

        def run(fn):
            def timed():
                with t.no_grad():
                    out = fn()
                sync()
                return out
            return timed

        return {
            "fprop": run(lambda: F.conv2d(tx, tw, padding=1)),
            "dgrad": run(lambda: t.nn.grad.conv2d_input(tx.shape, tw, tdy, padding=1)),
            "wgrad": run(lambda: t.nn.grad.conv2d_weight(tx, tw.shape, tdy, padding=1)),
        }


def load_torch(device_type):
    try:
        ref = TorchReference("cuda" if device_type == "cuda" else "cpu")
    except ImportError:
        return None
    if device_type == "cuda" and not ref.torch.cuda.is_available():
        return None
    return ref


# ---- deepconv -------------------------------------------------------------------------------------


def deepconv_passes(x, w, dy, device, algorithm):
    dx_, dw_, dy_ = (deepconv.asarray(a, device=device) for a in (x, w, dy))
    y = deepconv.empty(dy.shape, dtype=x.dtype, device=device)
    dx = deepconv.empty(x.shape, dtype=x.dtype, device=device)
    dw = deepconv.empty(w.shape, dtype=x.dtype, device=device)
    def sync():
        deepconv.synchronize(device)

    def run(fn):
        def timed():
            out = fn()
            sync()
            return out
        return timed

    a = dict(padding=1, algorithm=algorithm)
    return {
        "fprop": run(lambda: ops.conv2d(dx_, dw_, out=y, **a)),
        "dgrad": run(lambda: ops.conv2d_dgrad(dy_, dw_, x.shape, out=dx, **a)),
        "wgrad": run(lambda: ops.conv2d_wgrad(dx_, dy_, w.shape, with_bias=False, out=dw,
                                              **a)[0]),
    }


def relative_error(got, want):
    got = np.asarray(deepconv.to_numpy(got) if not hasattr(got, "cpu") else got.cpu().numpy(),
                     np.float64)
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


# ---- the run ----------------------------------------------------------------------------------------


# Largest error against float64 numpy, relative to the result's magnitude:
# float32 sums stay far below 1e-3; TF32 operands (10 mantissa bits) over
# reductions of up to 4608 terms reach a few 1e-3.
MAX_RELATIVE_ERROR = {"fp32": 1e-3, "tf32": 2e-2}


def measure(shape, batch, passes, device, torch_ref, with_numpy, repeat, min_seconds, algorithms):
    c, k, h = shape
    rng = np.random.default_rng(1 + c + k + h)
    x = rng.standard_normal((batch, c, h, h), dtype=np.float32)
    w = (rng.standard_normal((k, c, 3, 3), dtype=np.float32) / np.sqrt(9 * c)).astype(np.float32)
    dy = rng.standard_normal((batch, k, h, h), dtype=np.float32)
    truth = {"fprop": lambda: numpy_fprop(x, w), "dgrad": lambda: numpy_dgrad(dy, w),
             "wgrad": lambda: numpy_wgrad(x, dy)}
    ours = {alg: deepconv_passes(x, w, dy, device, alg) for alg in algorithms}
    theirs = torch_ref.passes(x, w, dy) if torch_ref else {}
    gflop = flops(batch, c, k, h) / 1e9
    rows = []
    for name in passes:
        row = {"pass": name, "C": c, "K": k, "H": h, "N": batch, "gflop": gflop,
               "variant": ops.conv2d_variant(name, x.shape, w.shape, padding=1,
                                             algorithm=algorithms[0], device=device),
               "algorithms": {}, "max_rel_error": 0.0}
        expected = truth[name]()
        for alg in algorithms:
            error = relative_error(ours[alg][name](), expected)
            if error > MAX_RELATIVE_ERROR[deepconv.get_conv_precision()]:
                raise SystemExit(f"deepconv {name} ({alg}) on {shape} is wrong: relative error "
                                 f"{error:.2e} against numpy")
            row["max_rel_error"] = max(row["max_rel_error"], error)
            row["algorithms"][alg] = gflop / median_time(ours[alg][name], repeat, min_seconds)
        row["deepconv"] = row["algorithms"][algorithms[0]]
        if name in theirs:
            row["torch"] = gflop / median_time(theirs[name], repeat, min_seconds)
            row["ratio_torch"] = row["deepconv"] / row["torch"]
        if with_numpy:
            row["numpy"] = gflop / median_time(truth[name], repeat, min_seconds)
            row["ratio_numpy"] = row["deepconv"] / row["numpy"]
        rows.append(row)
        print_row(row, torch_ref is not None, with_numpy)
    return rows


HEADER_DONE = []


def print_row(row, with_torch, with_numpy):
    others = list(row["algorithms"])[1:]
    if not HEADER_DONE:
        first = list(row["algorithms"])[0]
        cols = (f"{'pass':6} {'N':>3} {'C':>4} {'K':>4} {'HxW':>8} {'GFLOP':>7} "
                f"{'deepconv':>9} {first + ' ->':>20}")
        cols += "".join(f" {alg:>13}" for alg in others)
        if with_torch:
            cols += f" {'torch':>8} {'ratio':>6}"
        if with_numpy:
            cols += f" {'numpy':>8} {'ratio':>6}"
        print(cols + "   (GFLOP/s; deepconv = " + first + ")", flush=True)
        HEADER_DONE.append(True)
    line = (f"{row['pass']:6} {row['N']:>3} {row['C']:>4} {row['K']:>4} "
            f"{str(row['H']) + 'x' + str(row['H']):>8} {row['gflop']:>7.3f} {row['deepconv']:>9.2f}"
            f" {row['variant']:>20}")
    line += "".join(f" {row['algorithms'][alg]:>13.2f}" for alg in others)
    if with_torch:
        line += f" {row.get('torch', float('nan')):>8.2f} {row.get('ratio_torch', float('nan')):>6.3f}"
    if with_numpy:
        line += f" {row['numpy']:>8.2f} {row['ratio_numpy']:>6.3f}"
    print(line, flush=True)


def summary(rows):
    """Median deepconv/reference GFLOP/s ratio per shape set and pass."""
    out = {}
    for set_name in dict.fromkeys(r["set"] for r in rows):
        for name in PASSES:
            for ref in ("torch", "numpy"):
                ratios = [r[f"ratio_{ref}"] for r in rows
                          if r["set"] == set_name and r["pass"] == name and f"ratio_{ref}" in r]
                if ratios:
                    out[f"{set_name}_median_{name}_ratio_{ref}"] = statistics.median(ratios)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda:0" if deepconv.cuda_available() else "emu:0"
    parser.add_argument("--device", default=default_device, help=f"default {default_device}")
    parser.add_argument("--set", choices=("vgg224", "cifar", "both"), default=None,
                        help="shape set (default: both on a GPU, vgg224 on the emulator)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: 64 on a GPU, 4 for cifar / 1 for vgg224 "
                             "on the emulator)")
    parser.add_argument("--passes", default="fprop,dgrad,wgrad",
                        help="comma-separated subset of fprop,dgrad,wgrad")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help="comma-separated deepconv algorithms, timed side by side; the "
                             "first is the one compared with the references (default "
                             f"{','.join(ALGORITHMS)})")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--no-numpy", action="store_true", help="skip numpy im2col+matmul")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                        help="deepconv.set_conv_precision, and cuDNN's allow_tf32 to match")
    args = parser.parse_args(argv)
    deepconv.set_conv_precision(args.precision)

    device = deepconv.device(args.device)
    passes = [p for p in args.passes.split(",") if p]
    unknown = set(passes) - set(PASSES)
    if unknown:
        parser.error(f"--passes: unknown pass(es) {sorted(unknown)}; choose from {PASSES}")
    algorithms = [a for a in args.algorithms.split(",") if a]
    unknown = set(algorithms) - set(ops.ALGORITHMS)
    if unknown or not algorithms:
        parser.error(f"--algorithms: unknown algorithm(s) {sorted(unknown)}; choose from "
                     f"{ops.ALGORITHMS}")
    on_gpu = device.type == "cuda"
    which = args.set or ("both" if on_gpu else "vgg224")
    sets = {"vgg224": [("vgg224", VGG224)], "cifar": [("cifar", CIFAR)],
            "both": [("vgg224", VGG224), ("cifar", CIFAR)]}[which]
    torch_ref = load_torch(device.type)
    if torch_ref is not None:
        torch_ref.torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    with_numpy = not args.no_numpy and not on_gpu

    print(f"deepconv {deepconv.__version__} on {device}; reference: "
          f"{torch_ref.name if torch_ref else 'PyTorch not installed'}"
          f"{' and numpy im2col+matmul' if with_numpy else ''}; float32, "
          f"precision {args.precision}")
    if device.type == "emu":
        s = deepconv._emu.settings()
        print(f"emulator: {s['threads']} worker threads, {s['context_switch']} context switch; "
              f"torch threads: {torch_ref.torch.get_num_threads() if torch_ref else '-'}; "
              f"cores: {os.cpu_count()}")
    rows = []
    for set_name, shapes in sets:
        batch = args.batch or (64 if on_gpu else (1 if set_name == "vgg224" else 4))
        print(f"\n{set_name}, batch {batch}")
        for shape in shapes:
            rows += [dict(r, set=set_name) for r in
                     measure(shape, batch, passes, device, torch_ref, with_numpy, args.repeat,
                             min_seconds=0.2 if on_gpu else 0.0, algorithms=algorithms)]
    result = summary(rows)
    print()
    for key, value in result.items():
        print(f"{key}: {value:.3f}")
    for set_name, _ in sets:
        key = f"{set_name}_median_fprop_ratio_torch"
        if key in result and not on_gpu:
            print(f"headline ({set_name}): deepconv fprop reaches {result[key]:.2f}x PyTorch CPU "
                  "GFLOP/s, median over the shapes (target >= 1.0)")
    if args.json:
        print(json.dumps({"device": str(device), "rows": rows, "summary": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
