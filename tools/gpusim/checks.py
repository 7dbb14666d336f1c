"""The simulated-GPU checks: every op family's CUDA launchers, run by
tools/gpusim/runner (nvcc 11.8, GPGPU-Sim) on small problems, compared with
the emulator build (deepconv._emu, which tests/ checks against float64 numpy
and PyTorch). Driven by tools/gpusim/run.sh; usable alone:

    python tools/gpusim/checks.py RUNNER [--config SM86_RTX3070] [--jobs 2]

Prints one line per check (PASS/FAIL, name, the variant the GPU launcher
chose, the largest error) and last `N passed, M failed`; exit status 1 if any
check failed. For the conv checks the GPU launcher's variant (tile family,
split-K or not) must also equal the one deepconv._emu_gputiles (the GPU tile
table on the emulator) predicts, so that the split-K paths are known to run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import deepconv
from deepconv import _emu, _emu_gputiles

EMU = "emu:0"


@dataclass
class Buf:
    """A device buffer argument: its initial contents (in/out)."""

    array: np.ndarray


@dataclass
class Check:
    name: str
    op: str
    args: list            # deepconv._emu's argument order (conv: less the workspace)
    outputs: list[int]    # indices into args of the buffers to compare
    tol: float = 0.0      # max |gpu - emu| <= tol * (1 + max |emu|); 0 means bitwise
    expect_variant: str | None = None  # conv: the variant the GPU build must choose
    reference: object = None  # callable giving the expected outputs; default: deepconv._emu
    buffers: list = field(default_factory=list)


def conv_params(x_shape, w_shape, stride=1, pad=0, groups=1):
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    p = (h + 2 * pad - r) // stride + 1
    q = (w + 2 * pad - s) // stride + 1
    return (n, c, h, w, k, r, s, p, q, pad, pad, stride, stride, groups), (n, k, p, q)


def rand(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def conv_checks(rng):
    """fprop, dgrad, wgrad of each conv variant with its GPU tile: 3x3 (and its
    GPU-only split-K), general (grouped, strided), stride-1 dgrad, fully
    connected (and its split-K), wgrad split-K; float64's own tiles; Winograd
    F(4x4) and F(2x2) (grouped), float32 and float64."""
    out = []
    problems = [
        # name, x shape, w shape, stride, pad, groups, dtype, expected variants (f, d, w)
        ("3x3", (2, 8, 6, 6), (16, 8, 3, 3), 1, 1, 1, np.float32,
         ("implicit_gemm_3x3", "implicit_gemm_3x3", "implicit_gemm")),
        ("3x3_split_k", (1, 64, 4, 4), (64, 64, 3, 3), 1, 1, 1, np.float32,
         ("implicit_gemm_3x3+split_k", "implicit_gemm_3x3+split_k", "implicit_gemm")),
        ("5x5_groups2", (1, 4, 7, 7), (8, 2, 5, 5), 1, 2, 2, np.float32,
         ("implicit_gemm", "implicit_gemm_stride1", "implicit_gemm")),
        ("3x3_stride2", (1, 3, 9, 9), (4, 3, 3, 3), 2, 1, 1, np.float32,
         ("implicit_gemm", "implicit_gemm", "implicit_gemm")),
        ("fc", (2, 16, 3, 3), (8, 16, 3, 3), 1, 0, 1, np.float32,
         ("implicit_gemm_fc", "implicit_gemm_fc", "implicit_gemm")),
        ("fc_split_k", (2, 32, 4, 4), (8, 32, 4, 4), 1, 0, 1, np.float32,
         ("implicit_gemm_fc+split_k", "implicit_gemm_fc", "implicit_gemm")),
        ("wgrad_split_k", (1, 4, 32, 32), (8, 4, 3, 3), 1, 1, 1, np.float32,
         (None, None, "implicit_gemm+split_k")),
        ("3x3_f64", (1, 4, 5, 5), (8, 4, 3, 3), 1, 1, 1, np.float64,
         ("implicit_gemm_3x3", "implicit_gemm_3x3", "implicit_gemm")),
    ]
    # Winograd (csrc/ops/conv_winograd.cu): asked for by name, since the GPU
    # build's `auto` keeps the implicit GEMM; each of its transform kernels and
    # its batched GEMM with the GPU tiles.
    winograd = [
        ("winograd_4x4", (1, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, np.float32,
         ("winograd_4x4", "winograd_4x4", "winograd_4x4")),
        ("winograd_2x2_groups2", (2, 8, 6, 6), (8, 4, 3, 3), 1, 2, 2, np.float32,
         ("winograd_2x2", "winograd_2x2", "winograd_2x2")),
        ("winograd_4x4_f64", (1, 4, 6, 6), (4, 4, 3, 3), 1, 0, 1, np.float64,
         ("winograd_4x4", "winograd_4x4", "winograd_4x4")),
    ]
    problems = [p + ("auto",) for p in problems] + [p + (p[0].split("_f64")[0].split("_groups")[0],)
                                                    for p in winograd]
    for name, xs, ws, stride, pad, groups, dt, variants, algorithm in problems:
        params, ys = conv_params(xs, ws, stride, pad, groups)
        x, w, b, dy = rand(rng, xs, dt), rand(rng, ws, dt), rand(rng, ws[0], dt), rand(rng, ys, dt)
        dtn = np.dtype(dt).name
        tol = 1e-5 if dt == np.float32 else 1e-12
        if variants[0]:
            out.append(Check(f"conv_fprop_{name}", "conv2d_fprop",
                             [params, Buf(x), Buf(w), Buf(b), Buf(np.zeros(ys, dt)), 1, dtn,
                              algorithm],
                             [4], tol, variants[0]))
            out.append(Check(f"conv_dgrad_{name}", "conv2d_dgrad",
                             [params, Buf(dy), Buf(w), Buf(np.zeros(xs, dt)), dtn, algorithm], [3],
                             tol,
                             variants[1]))
        out.append(Check(f"conv_wgrad_{name}", "conv2d_wgrad",
                         [params, Buf(x), Buf(dy), Buf(np.zeros(ws, dt)), Buf(np.zeros(ws[0], dt)),
                          dtn, algorithm], [3, 4], tol, variants[2]))
    return out


def other_checks(rng):
    out = []
    x = rand(rng, 1001, np.float32)  # not a multiple of 4: vector body and scalar tail
    out.append(Check("relu_fprop", "relu_fprop", [Buf(x), Buf(np.zeros_like(x)), x.size, "float32"], [1]))
    y = np.maximum(x, 0)
    out.append(Check("relu_bprop", "relu_bprop",
                     [Buf(y), Buf(rand(rng, x.size, np.float32)), Buf(np.zeros_like(x)), x.size,
                      "float32"], [2]))
    xd = rand(rng, 77, np.float64)
    out.append(Check("relu_fprop_f64", "relu_fprop", [Buf(xd), Buf(np.zeros_like(xd)), xd.size,
                                                      "float64"], [1]))
    for name, shape, kernel, stride, pad in [("3x3_s2", (1, 3, 7, 7), 3, 2, 0),
                                             ("2x2_s2_pad1", (2, 2, 6, 5), 2, 2, 1)]:
        xp = rand(rng, shape, np.float32)
        xp.flat[::7] = xp.flat[1::7][: xp.flat[::7].size]  # ties: first maximum wins
        ph = (shape[2] + 2 * pad - kernel) // stride + 1
        pw = (shape[3] + 2 * pad - kernel) // stride + 1
        geo = [tuple(shape), (ph, pw), (kernel, kernel), (stride, stride), (pad, pad)]
        yp = np.zeros(shape[:2] + (ph, pw), np.float32)
        out.append(Check(f"pool_fprop_{name}", "max_pool2d_fprop", [Buf(xp), Buf(yp), *geo, "float32"], [1]))
        # bprop needs the true y: computed by the emulator here.
        y_emu = deepconv.to_numpy(deepconv.ops.max_pool2d(deepconv.asarray(xp, device=EMU), kernel,
                                                          stride, pad))
        out.append(Check(f"pool_bprop_{name}", "max_pool2d_bprop",
                         [Buf(xp), Buf(y_emu), Buf(rand(rng, y_emu.shape, np.float32)),
                          Buf(np.zeros_like(xp)), *geo, "float32"], [3], 1e-6))
    shape = (2, 8, 3, 3)
    xl = rand(rng, shape, np.float32)
    lrn = [tuple(shape), 5, 1e-2, 0.75, 2.0]
    out.append(Check("lrn_fprop", "lrn_fprop", [Buf(xl), Buf(np.zeros_like(xl)), *lrn, "float32"], [1], 1e-6))
    yl = np.zeros_like(xl)
    _emu.lrn_fprop(xl.ctypes.data, yl.ctypes.data, *lrn, "float32")
    out.append(Check("lrn_bprop", "lrn_bprop",
                     [Buf(xl), Buf(yl), Buf(rand(rng, shape, np.float32)), Buf(np.zeros_like(xl)),
                      *lrn, "float32"], [3], 1e-6))
    n, k = 4, 300
    logits = rand(rng, (n, k), np.float32) * 5
    out.append(Check("softmax_fprop", "softmax_fprop",
                     [Buf(logits), Buf(np.zeros_like(logits)), n, k, "float32"], [1], 1e-6))
    for ldt in ("int32", "int64"):
        labels = np.arange(n, dtype=ldt) * 37 % k
        out.append(Check(f"softmax_xent_fprop_{ldt}", "softmax_xent_fprop",
                         [Buf(logits), Buf(labels), Buf(np.zeros_like(logits)),
                          Buf(np.zeros(n, np.float32)), Buf(np.zeros(1, np.float32)), n, k,
                          "float32", ldt], [2, 3, 4], 1e-6))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.arange(n, dtype=np.int32) * 11 % k
    out.append(Check("softmax_xent_bprop", "softmax_xent_bprop",
                     [Buf(probs.astype(np.float32)), Buf(labels), Buf(np.zeros_like(logits)), n, k,
                      0.25, "float32", "int32"], [2], 1e-6))
    scores = np.round(rand(rng, (6, 100), np.float32), 1)  # ties: lower index first
    scores[2, 5] = np.nan
    out.append(Check("topk", "topk", [Buf(scores), Buf(np.zeros((6, 5), np.float32)),
                                      Buf(np.zeros((6, 5), np.int64)), 6, 100, 5, "float32"], [1, 2]))
    out.append(Check("topk_miss", "topk_miss",
                     [Buf(scores), Buf(np.arange(6, dtype=np.int32) * 13 % 100),
                      Buf(np.zeros(6, np.int32)), 6, 100, 5, "float32", "int32"], [2]))
    xd = rand(rng, 1003, np.float32)
    out.append(Check("dropout", "dropout_apply",
                     [Buf(xd), Buf(np.zeros_like(xd)), xd.size, 1234, 7, 0.5, 1, 2.0, "float32", 0],
                     [1]))
    counters = rng.integers(0, 2**32, (8, 4), dtype=np.uint32)
    keys = rng.integers(0, 2**32, (8, 2), dtype=np.uint32)
    out.append(Check("philox4x32_10", "philox4x32_10",
                     [Buf(counters), Buf(keys), Buf(np.zeros((8, 4), np.uint32)), 8], [2]))
    sgd = [2]
    for i, size in enumerate((300, 17)):
        sgd += [Buf(rand(rng, size, np.float32)), Buf(rand(rng, size, np.float32)),
                Buf(rand(rng, size, np.float32)), size, 0.01 * (i + 1), 0.9, 5e-4]
    # The simulator's own check (patches/0004-64-bit-integer-literals.patch).
    words = rng.integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    expected = (words & np.uint64(0xFFFFFFFF)) * np.uint64(3449720151) + words
    out.append(Check("literal_64bit", "literal_64bit",
                     [Buf(words), Buf(np.zeros_like(words)), words.size], [1],
                     reference=lambda: [expected]))
    out.append(Check("sgd_update", "sgd_update", sgd + ["float32"], [1, 2, 8, 9], 1e-6))
    return out


def token(value, check):
    if isinstance(value, Buf):
        check.buffers.append(value.array)
        return f"b:{len(check.buffers) - 1}"
    if isinstance(value, str):
        return f"s:{value}"
    if isinstance(value, tuple):
        return "t:" + ",".join(str(int(v)) for v in value)
    if isinstance(value, float):
        return f"f:{value!r}"
    return f"i:{int(value)}"


def write_plan(checks, path, folder):
    with open(path, "w") as plan:
        for c in checks:
            c.buffers = []
            tokens = [token(v, c) for v in c.args]
            for j, array in enumerate(c.buffers):
                np.ascontiguousarray(array).tofile(os.path.join(folder, f"{c.name}.{j}.bin"))
            plan.write(" ".join([c.name, c.op] + tokens) + "\n")


def emu_reference(c):
    """The emulator's outputs for c: the buffers after the same call on _emu."""
    if c.reference is not None:
        return c.reference()
    arrays = [deepconv.asarray(np.array(v.array), device=EMU) if isinstance(v, Buf) else v
              for v in c.args]
    args = [a.ctypes.data if isinstance(a, np.ndarray) else a for a in arrays]
    if c.op.startswith("conv2d_"):  # the emulator's own workspace, before the dtype
        *args, dtype, algorithm = args
        ws_bytes = getattr(_emu, c.op + "_workspace_bytes")(args[0], dtype, algorithm)
        ws = deepconv.zeros(max(ws_bytes, 1), np.uint8, device=EMU)
        getattr(_emu, c.op)(*args, ws.ctypes.data, ws_bytes, dtype, algorithm=algorithm)
        return [arrays[i] for i in c.outputs]
    if c.op == "sgd_update":  # the module takes lists per tensor
        count, rest = args[0], args[1:-1]
        per = [rest[7 * i:7 * i + 7] for i in range(count)]
        args = [[p[j] for p in per] for j in range(7)] + [args[-1]]
    getattr(_emu, c.op)(*args)
    return [arrays[i] for i in c.outputs]


def gpu_variant_predicted(c):
    dtype, algorithm = c.args[-2:]  # conv checks end with the dtype and the algorithm
    return getattr(_emu_gputiles, c.op + "_variant")(c.args[0], dtype, algorithm)


def compare(c, folder):
    index = {id(b): j for j, b in enumerate(c.buffers)}
    worst, ok = 0.0, True
    for i, ref in zip(c.outputs, emu_reference(c)):
        j = index[id(c.args[i].array)]
        got = np.fromfile(os.path.join(folder, f"{c.name}.{j}.out"), dtype=ref.dtype).reshape(ref.shape)
        ref = np.asarray(ref)
        if c.tol == 0:
            same = np.array_equal(got, ref, equal_nan=np.issubdtype(ref.dtype, np.floating))
            ok &= bool(same)
            if np.issubdtype(ref.dtype, np.floating):
                worst = max(worst, float(np.nanmax(np.abs(got - ref), initial=0)))
            elif not same:
                worst = max(worst, float(np.count_nonzero(got != ref)))
        else:
            err = float(np.max(np.abs(got.astype(np.float64) - ref), initial=0))
            scale = 1 + float(np.max(np.abs(ref), initial=0))
            ok &= bool(np.isfinite(err) and err <= c.tol * scale)
            worst = max(worst, err)
    return ok, worst


def simulate(runner, config, checks, folder, tag):
    """One simulator process over `checks`: {name: ("ran" | "error", detail)}, and its log."""
    plan = os.path.join(folder, f"plan{tag}.txt")
    write_plan(checks, plan, folder)
    env_sh = os.path.join(os.environ.get("GPGPUSIM_HOME", os.path.expanduser("~/.cache/gpgpu-sim")),
                          "env.sh")
    log = os.path.join(folder, f"sim{tag}.log")
    cmd = f'source "{env_sh}" && gpgpusim_run "$1" "$2" "$3" "$4"'
    with open(log, "w") as out:
        subprocess.run(["bash", "-c", cmd, "-", config, runner, plan, folder], stdout=out,
                       stderr=subprocess.STDOUT, env={**os.environ, "PTX_SIM_MODE_FUNC": "1"})
    results = {}
    with open(log, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) == 3 and parts[0] in ("ran", "error"):
                results[parts[1]] = (parts[0], parts[2])
    return results, log


def run_shard(runner, config, checks, folder, shard):
    """Runs `checks` in one simulator process; when the process dies (the
    simulator aborts on some faults), the check it died in is reported with
    the log's last line and the ones after it run in a fresh process."""
    results, logs, rest, attempt = {}, [], list(checks), 0
    while rest:
        got, log = simulate(runner, config, rest, folder, f"{shard}_{attempt}")
        results.update(got)
        logs.append(log)
        done = 0
        while done < len(rest) and rest[done].name in got:
            done += 1
        if done < len(rest):  # the process died in rest[done]
            with open(log, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()] or ["(empty log)"]
            why = [line for line in lines if re.search(r"Assertion|ERROR|rror|fault", line)]
            results[rest[done].name] = ("crashed",
                                        f"the simulator died in this check: {(why or lines)[-1][:200]}")
            done += 1
        rest, attempt = rest[done:], attempt + 1
    return results, logs

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runner", help="tools/gpusim/runner built by run.sh")
    ap.add_argument("--config", default="SM86_RTX3070", help="GPGPU-Sim config (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="simulator processes at once")
    ap.add_argument("--only", default="", help="run the checks whose name contains this")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(20261204)
    checks = [c for c in conv_checks(rng) + other_checks(rng) if a.only in c.name]
    runner = os.path.abspath(a.runner)
    with tempfile.TemporaryDirectory(prefix="gpusim-") as folder:
        shards = [checks[i::a.jobs] for i in range(a.jobs)]
        with ThreadPoolExecutor(a.jobs) as pool:
            done = list(pool.map(lambda s: run_shard(runner, a.config, s[1], folder, s[0]),
                                 enumerate(shards)))
        results = {}
        for r, _ in done:
            results.update(r)
        passed = failed = 0
        for c in checks:
            status, detail = results.get(c.name, ("missing", "no result (simulator crashed?)"))
            if status != "ran":
                ok, line = False, f"FAIL {c.name}: {status}: {detail}"
            else:
                ok, worst = compare(c, folder)
                variant = detail
                note = ""
                if c.expect_variant is not None:
                    predicted = gpu_variant_predicted(c)
                    if variant != c.expect_variant or predicted != variant:
                        ok = False
                        note = f" (expected {c.expect_variant}; _emu_gputiles predicts {predicted})"
                line = f"{'PASS' if ok else 'FAIL'} {c.name} [{variant}] max_err={worst:.3g}{note}"
            print(line, flush=True)
            passed, failed = passed + ok, failed + (not ok)
        if failed:
            for _, logs in done:
                for log in logs:
                    print(f"--- tail of {os.path.basename(log)}", file=sys.stderr)
                    with open(log, errors="replace") as f:
                        sys.stderr.writelines(f.readlines()[-15:])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
