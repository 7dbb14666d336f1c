#!/usr/bin/env bash
# GPU acceptance check: one command for a machine with an NVIDIA GPU.
#
#   tools/gpu_check.sh            (from anywhere; about 5-10 minutes)
#
# 1. build   deepconv with nvcc for this machine's GPU architecture only
#            (CMAKE_CUDA_ARCHITECTURES=<cc>-real, from nvidia-smi), installed
#            into a scratch folder (the current environment is left alone)
#            (then deepconv must see the GPU: the module, a device, cupy)
# 2. tests   the CUDA tests: every test parametrised on cuda:0 (pytest -k cuda),
#            plus the CUDA module's own tests (tests/test_backend.py)
# 3. bench   benchmarks/conv3x3.py --device cuda:0: deepconv beside cuDNN
#            through PyTorch when a CUDA build of torch is installed, in fp32
#            and in tf32 (deepconv.set_conv_precision / cuDNN's allow_tf32)
# 4. report  tools/resource_report.py on the new binary (fails on spills)
# and prints one summary table. Exit status: 0 all passed; 1 a step failed;
# 2 no GPU / no nvcc (nothing was run).
#
# Environment: GPU_CHECK_BUILD (scratch folder, default build/gpu_check),
# GPU_CHECK_BATCH (benchmark batch, default 8), GPU_CHECK_NVCC (nvcc to use;
# default from PATH, then $CUDA_HOME or /usr/local/cuda), PYTHON (default python3).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
build=${GPU_CHECK_BUILD:-$root/build/gpu_check}
batch=${GPU_CHECK_BATCH:-8}
t0=$SECONDS
rows=()
say() { printf '[gpu_check %4ds] %s\n' "$((SECONDS - t0))" "$*"; }
row() { rows+=("$(printf '%-8s %-5s %6ss  %s' "$1" "$2" "$3" "$4")"); }
summary() {
  echo
  echo "deepconv GPU check: ${gpu_name:-no GPU} (sm_${cc:-?}), $(date -u '+%Y-%m-%d %H:%M UTC')"
  printf '%-8s %-5s %7s  %s\n' step result time detail
  for r in "${rows[@]}"; do echo "$r"; done
}

# --- is there a GPU to check? -----------------------------------------------
no_gpu() {
  echo "gpu_check: no usable NVIDIA GPU on this machine: $1" >&2
  echo "gpu_check: this check needs a GPU and its driver; without one, run the emulator tests" \
       "(pytest) or the simulated-GPU job (tools/gpusim/run.sh)." >&2
  exit 2
}
command -v nvidia-smi >/dev/null 2>&1 || no_gpu "nvidia-smi not found (no NVIDIA driver)"
query=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>&1) ||
  no_gpu "nvidia-smi failed: $(echo "$query" | head -1)"
[ -n "$query" ] || no_gpu "nvidia-smi lists no GPU"
gpu_name=$(echo "$query" | head -1 | cut -d, -f1 | sed 's/ *$//')
cc=$(echo "$query" | head -1 | cut -d, -f2 | tr -d ' .')
[[ "$cc" =~ ^[0-9]+$ ]] || no_gpu "cannot read the compute capability from nvidia-smi ('$query')"
if [ -n "${GPU_CHECK_NVCC:-}" ]; then nvcc_bin=$GPU_CHECK_NVCC
else nvcc_bin=$(command -v nvcc || ls "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" 2>/dev/null || true); fi
[ -n "$nvcc_bin" ] && [ -x "$nvcc_bin" ] || no_gpu "the GPU is there ($gpu_name) but nvcc is not (install the CUDA toolkit)"
say "GPU: $gpu_name, compute capability $cc; nvcc: $nvcc_bin"

# --- 1. build for this architecture only ---------------------------------------
step_start=$SECONDS
site=$build/site
rm -rf "$site"
mkdir -p "$build"
isolation=()
if "$py" -c "import scikit_build_core, pybind11" 2>/dev/null; then isolation=(--no-build-isolation); fi
if CUDACXX=$nvcc_bin timeout 900 "$py" -m pip install --no-deps "${isolation[@]}" --target "$site" \
     -C build-dir="$build/cmake" -C cmake.define.DEEPCONV_CUDA=ON \
     -C cmake.define.CMAKE_CUDA_ARCHITECTURES="${cc}-real" "$root" > "$build/build.log" 2>&1; then
  row build ok $((SECONDS - step_start)) "sm_${cc} only; log $build/build.log"
else
  row build FAIL $((SECONDS - step_start)) "see $build/build.log"
  tail -20 "$build/build.log"; summary; exit 1
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
cuda_so=$(ls "$site"/deepconv/_cuda*.so 2>/dev/null | head -1)
# The CUDA tests and the benchmark need deepconv to see the GPU (the module,
# a device, and cupy for device arrays); otherwise every CUDA test would skip.
step_start=$SECONDS
if reason=$(cd "$build" && "$py" -c '
import sys, deepconv
from deepconv.backend import cuda
sys.exit(0 if deepconv.cuda_available() else cuda.unavailable_reason())' 2>&1); then
  row device ok $((SECONDS - step_start)) "deepconv.cuda_available(): $gpu_name"
else
  row device FAIL $((SECONDS - step_start)) "deepconv cannot use the GPU: $reason (cupy: pip install cupy-cuda12x)"
  summary; exit 1
fi
failed=0

# --- 2. CUDA tests ---------------------------------------------------------------
step_start=$SECONDS
# From the scratch folder, so that `import deepconv` finds the new build, never
# the source folder deepconv/ (python -m puts the current folder on sys.path).
if (cd "$build" && timeout 600 "$py" -m pytest -p no:cacheprovider -c "$root/pyproject.toml" \
      --rootdir "$root" -q -m "not slow" -k "cuda" "$root/tests" > "$build/tests.log" 2>&1); then
  row tests ok $((SECONDS - step_start)) "$(tail -1 "$build/tests.log")"
else
  row tests FAIL $((SECONDS - step_start)) "$(tail -1 "$build/tests.log"); see $build/tests.log"
  failed=1
fi

# --- 3. conv3x3 benchmark against cuDNN, in both precisions ----------------------
# fp32 (cuDNN without TF32) and tf32 (deepconv's mma.sync main loop beside
# cuDNN with allow_tf32): one row and one log each.
for precision in fp32 tf32; do
  step_start=$SECONDS
  log="$build/bench_$precision.log"
  if (cd "$build" && timeout 240 "$py" "$root/benchmarks/conv3x3.py" --device cuda:0 --set vgg224 \
        --batch "$batch" --repeat 3 --precision "$precision" > "$log" 2>&1); then
    row "$precision" ok $((SECONDS - step_start)) "$(grep -i -m1 'headline' "$log" || tail -1 "$log")"
  else
    row "$precision" FAIL $((SECONDS - step_start)) "see $log"
    failed=1
  fi
done

# --- 4. resource report -----------------------------------------------------------------
step_start=$SECONDS
if timeout 120 "$py" "$root/tools/resource_report.py" --binary "$cuda_so" > "$build/resources.log" 2>&1; then
  row report ok $((SECONDS - step_start)) "no spills; table in $build/resources.log"
else
  row report FAIL $((SECONDS - step_start)) "spills or no cuobjdump; see $build/resources.log"
  failed=1
fi

cat "$build/bench_fp32.log" "$build/bench_tf32.log" 2>/dev/null | grep -i "median\|headline"
summary
exit $failed
