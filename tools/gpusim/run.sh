#!/usr/bin/env bash
# The simulated-GPU job: deepconv's CUDA launchers compiled by nvcc 11.8 and
# run on GPGPU-Sim, every op family checked against the emulator build.
#
#   tools/gpusim/run.sh               (from anywhere; deepconv must be installed)
#   tools/gpusim/run.sh --build-only  steps 1 and 2 (benchmarks/gpusim_conv.py)
#
# 1. ../shared/gpgpu-sim/setup.sh (beside the repository root; GPGPUSIM_SHARED
#    overrides) builds or reuses the simulator and the CUDA 11.8 toolkit under
#    ${GPGPUSIM_HOME:-~/.cache/gpgpu-sim}, with tools/gpusim/patches/ applied on
#    top of its own fixes. Needs root (or sudo) for apt-get on the first run.
# 2. nvcc 11.8 compiles csrc/ops/*.cu and tools/gpusim/runner.cu (sm_86, the
#    SM86_RTX3070 config's architecture), in parallel, into one program.
# 3. tools/gpusim/checks.py runs it on the simulator (functional mode,
#    PTX_SIM_MODE_FUNC=1: correctness, no timing) and prints one line per
#    check, then `N passed, M failed`. Exit status 1 if any check failed.
#
# Environment: GPUSIM_CONFIG (default SM86_RTX3070), GPUSIM_BUILD (default
# build/gpusim), GPUSIM_JOBS (parallel compiles and simulator processes,
# default nproc).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shared=${GPGPUSIM_SHARED:-$root/../shared/gpgpu-sim}
if [ -z "${GPGPUSIM_SHARED:-}" ] && [ ! -d "$shared" ] && [ -d "$root/shared/gpgpu-sim" ]; then
  shared=$root/shared/gpgpu-sim  # a checkout that carries shared/ inside it
fi
config=${GPUSIM_CONFIG:-SM86_RTX3070}
build=${GPUSIM_BUILD:-$root/build/gpusim}
jobs=${GPUSIM_JOBS:-$(nproc)}
t0=$SECONDS
say() { printf '[gpusim %4ds] %s\n' "$((SECONDS - t0))" "$*"; }

[ -x "$shared/setup.sh" ] || { echo "gpusim: no $shared/setup.sh (set GPGPUSIM_SHARED)" >&2; exit 2; }
say "simulator: $shared/setup.sh (cached after the first run)"
GPGPUSIM_EXTRA_PATCHES=$root/tools/gpusim/patches "$shared/setup.sh" | tail -2
# shellcheck disable=SC1091
source "${GPGPUSIM_HOME:-$HOME/.cache/gpgpu-sim}/env.sh"

sm=$(awk '/^-gpgpu_ptx_force_max_capability/ {print $2}' "$GPGPUSIM_CONFIGS/$config/gpgpusim.config")
[ -n "$sm" ] || { echo "gpusim: config $config has no -gpgpu_ptx_force_max_capability" >&2; exit 2; }
say "compile: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') -arch=sm_$sm, $jobs at a time -> $build"
mkdir -p "$build"
rm -f "$build"/*.o "$build/runner"
export build sm root
# -DDC_NO_SM80_PTX: GPGPU-Sim's PTX front end has no cp.async (nor
# mma.sync / ldmatrix), so the sm_80+ ring is left out and the register-staged
# main loop runs; the ring and TF32 are checked on the emulator
# (tests/test_conv_gpu_tiles.py, tests/test_conv_tf32.py).
compile() {  # one translation unit -> $build/<name>.o; the log only on failure
  local src=$1 name
  name=$(basename "$src" .cu)
  nvcc -O3 -std=c++17 --expt-relaxed-constexpr -cudart shared -arch=sm_"$sm" -I"$root/csrc" \
    -DDC_NO_SM80_PTX \
    -c "$src" -o "$build/$name.o" > "$build/$name.log" 2>&1 || { cat "$build/$name.log"; return 1; }
}
export -f compile
# The conv launchers are the long ones: start them first.
printf '%s\n' "$root"/csrc/ops/conv_*.cu "$root"/tools/gpusim/runner.cu \
  $(ls "$root"/csrc/ops/*.cu | grep -v '/conv_') |
  xargs -P "$jobs" -I{} bash -c 'compile "$1"' _ {}
nvcc -cudart shared -arch=sm_"$sm" -o "$build/runner" "$build"/*.o 2>&1 |
  grep -v "libcudadevrt.a" || true  # nvlink warns about the empty libcudadevrt.a setup.sh makes
[ -x "$build/runner" ] || { echo "gpusim: link failed" >&2; exit 1; }

if [ "${1:-}" = "--build-only" ]; then say "built $build/runner"; exit 0; fi
say "run: checks on $config (functional simulation)"
rc=0
(cd "$build" && python "$root/tools/gpusim/checks.py" "$build/runner" --config "$config" --jobs "$jobs") || rc=$?
say "done in $((SECONDS - t0))s (exit $rc)" >&2  # stdout's last line stays checks.py's summary
exit $rc
