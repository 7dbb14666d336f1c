"""Simulated GPU timing of deepconv's 3x3 conv kernels: GPGPU-Sim cycles,
FLOP per cycle and the fraction of the configuration's FP32 peak, for the
fprop, dgrad and wgrad of VGG layers scaled down to run in minutes.

    python benchmarks/gpusim_conv.py [--layers conv1_2,conv2_2,conv5_x] [--jobs 2]

Needs the simulator and the runner program: tools/gpusim/run.sh --build-only
(this script runs it when build/gpusim/runner is missing). Performance mode
(cycle-level; PTX_SIM_MODE_FUNC unset), one simulator process per pass.

What the numbers mean: cycles are the sum over the pass's kernels (the
implicit GEMM, and its split-K reduction when there is one), each including
the config's kernel-launch latency (5,000 cycles on SM86_RTX3070). The peak
is SMs x 128 FP32 lanes x 2 FLOP (an FMA) per cycle: 46 x 256 = 11,776 on
SM86_RTX3070. A scaled layer has fewer GEMM tiles than the 46 SMs x 2 blocks
the GPU holds, so its fraction of peak is a floor for the real layer, whose
tile count is larger by the factor printed as `scale` (the FLOP scale, in
N*P*Q and in C*K): its FLOP and thread instructions are scale x these, its
cycles about scale x these once the GPU is full, much fewer while the extra
tiles still fit on idle SMs (full-size layers take hours here). Use the numbers to compare kernel versions
with each other on the same layers, not as a GPU's time (README, "Simulated
GPU": accuracy).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "SM86_RTX3070"

# name: (scaled (C, K, H, W), real VGG-16 (C, K, H, W)); batch 1, 3x3, pad 1.
# The scaled layers keep VGG's channel counts where the simulator allows it
# in minutes, and fill whole 128-wide GPU tiles where the real layer does.
LAYERS = {
    "conv1_2": ((64, 64, 16, 16), (64, 64, 224, 224)),
    "conv2_2": ((128, 128, 8, 16), (128, 128, 112, 112)),
    "conv5_x": ((64, 128, 14, 14), (512, 512, 14, 14)),
}
PASSES = ("fprop", "dgrad", "wgrad")


def flops(c, k, h, w):
    return 2 * h * w * k * c * 9  # every pass of a stride-1 pad-1 3x3 layer at batch 1


def plan_line(name, pas, c, k, h, w):
    params = ",".join(str(v) for v in (1, c, h, w, k, 3, 3, h, w, 1, 1, 1, 1, 1))
    if pas == "fprop":  # x w b=null y relu dtype
        return f"{name} conv2d_fprop t:{params} b:0 b:1 n: b:2 i:0 s:float32", [(c, h, w), (k, c, 3, 3), (k, h, w)]
    if pas == "dgrad":  # dy w dx dtype
        return f"{name} conv2d_dgrad t:{params} b:0 b:1 b:2 s:float32", [(k, h, w), (k, c, 3, 3), (c, h, w)]
    return f"{name} conv2d_wgrad t:{params} b:0 b:1 b:2 n: s:float32", [(c, h, w), (k, h, w), (k, c, 3, 3)]


def simulate(runner, folder, name, line, shapes):
    rng = np.random.default_rng(7)
    for j, shape in enumerate(shapes):
        np.asarray(rng.standard_normal(shape), np.float32).tofile(os.path.join(folder, f"{name}.{j}.bin"))
    plan = os.path.join(folder, f"{name}.plan")
    with open(plan, "w") as f:
        f.write(line + "\n")
    env_sh = os.path.join(os.environ.get("GPGPUSIM_HOME", os.path.expanduser("~/.cache/gpgpu-sim")), "env.sh")
    env = {k: v for k, v in os.environ.items() if k != "PTX_SIM_MODE_FUNC"}
    out = subprocess.run(["bash", "-c", f'source "{env_sh}" && gpgpusim_run {CONFIG} "$1" "$2" "$3"',
                          "-", runner, plan, folder], capture_output=True, text=True, env=env).stdout
    kernels = re.findall(r"^kernel_name = (\S+)", out, re.M)
    cycles = [int(v) for v in re.findall(r"^gpu_sim_cycle = (\d+)", out, re.M)]
    insns = [int(v) for v in re.findall(r"^gpu_sim_insn = (\d+)", out, re.M)]
    ran = re.search(rf"^ran {name} (\S+)", out, re.M)
    if not ran or not cycles:
        raise RuntimeError(f"{name}: the simulation failed:\n" + "\n".join(out.splitlines()[-15:]))
    return ran.group(1), kernels, sum(cycles), sum(insns)


def sm_count():
    env_sh = os.path.join(os.environ.get("GPGPUSIM_HOME", os.path.expanduser("~/.cache/gpgpu-sim")), "env.sh")
    cfg = subprocess.run(["bash", "-c", f'source "{env_sh}" && cat "$GPGPUSIM_CONFIGS/{CONFIG}/gpgpusim.config"'],
                         capture_output=True, text=True, check=True).stdout
    clusters = int(re.search(r"^-gpgpu_n_clusters (\d+)", cfg, re.M).group(1))
    per = int(re.search(r"^-gpgpu_n_cores_per_cluster (\d+)", cfg, re.M).group(1))
    return clusters * per


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default=",".join(LAYERS), help="comma-separated, from: " + ", ".join(LAYERS))
    ap.add_argument("--passes", default=",".join(PASSES))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="simulator processes at once")
    ap.add_argument("--runner", default=os.path.join(ROOT, "build", "gpusim", "runner"))
    a = ap.parse_args(argv)
    layers = [name for name in a.layers.split(",") if name]
    unknown = [n for n in layers if n not in LAYERS]
    if unknown:
        ap.error(f"--layers: unknown {unknown}; choose from {list(LAYERS)}")
    passes = [p for p in a.passes.split(",") if p]
    if any(p not in PASSES for p in passes):
        ap.error(f"--passes: choose from {PASSES}")
    if not os.path.exists(a.runner):
        subprocess.run([os.path.join(ROOT, "tools", "gpusim", "run.sh"), "--build-only"], check=True)
    peak = sm_count() * 128 * 2
    jobs = [(layer, pas) for layer in layers for pas in passes]
    with tempfile.TemporaryDirectory(prefix="gpusim-bench-") as folder:
        def one(job):
            layer, pas = job
            (c, k, h, w), _ = LAYERS[layer]
            line, shapes = plan_line(f"{layer}_{pas}", pas, c, k, h, w)
            return simulate(os.path.abspath(a.runner), folder, f"{layer}_{pas}", line, shapes)
        with ThreadPoolExecutor(a.jobs) as pool:
            results = list(pool.map(one, jobs))
    print(f"deepconv 3x3 conv on GPGPU-Sim {CONFIG} (performance mode), float32, batch 1; "
          f"FP32 peak {peak} FLOP/cycle")
    print(f"{'layer':8} {'pass':6} {'scaled C,K,HxW':16} {'variant':28} {'kernels':>7} {'cycles':>9} "
          f"{'MFLOP':>7} {'FLOP/cyc':>8} {'%peak':>6} {'insn(M)':>8} {'scale':>6}")
    for (layer, pas), (variant, kernels, cycles, insn) in zip(jobs, results):
        (c, k, h, w), real = LAYERS[layer]
        f = flops(c, k, h, w)
        scale = flops(*real) / f
        print(f"{layer:8} {pas:6} {f'{c},{k},{h}x{w}':16} {variant:28} {len(kernels):>7} {cycles:>9} "
              f"{f / 1e6:>7.1f} {f / cycles:>8.1f} {100 * f / cycles / peak:>5.2f}% {insn / 1e6:>8.1f} "
              f"{scale:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
