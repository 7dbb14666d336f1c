"""tools/resource_report.py: occupancy arithmetic, SASS parsing, and the
report run end to end on small kernels compiled here with nvcc."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "resource_report.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("resource_report", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


rr = _load_tool()
KIB = 1024


# --------------------------------------------------------------------------
# Occupancy arithmetic against hand-computed cases
# --------------------------------------------------------------------------

# (arch, registers, static shared, block size) -> (blocks/SM, warps/SM, limiters)
OCCUPANCY_CASES = {
    # 32 regs -> 1024 regs/warp -> 16 warps per quarter -> 64 warps; 8 warps a block.
    "sm80_full": (("sm_80", 32, 0, 256), (8, 64, {"warps", "registers"})),
    # 64 regs -> 2048/warp -> 8 per quarter -> 32 warps = sm_75's whole SM.
    "sm75_regs64": (("sm_75", 64, 0, 256), (4, 32, {"warps", "registers"})),
    # 72 regs -> 2304/warp -> 16384 // 2304 = 7 per quarter -> 28 warps -> 7 blocks of 4.
    "sm86_regs72": (("sm_86", 72, 0, 128), (7, 28, {"registers"})),
    # 48 KiB + 1 KiB reserved = 50176 B a block; 228 KiB // 50176 = 4 blocks.
    "sm90_shared": (("sm_90", 32, 48 * KIB, 128), (4, 16, {"shared"})),
    # 1000 B rounds to 1024 (256 B units, no reservation on Turing): 64 by
    # shared memory, capped at 16 blocks; 2 warps each -> 32 warps.
    "sm75_block_cap": (("sm_75", 16, 1000, 64), (16, 32, {"warps", "blocks"})),
    # 255 regs -> 8192/warp; 32 warps need 256K registers > 64K a block: no launch.
    "sm89_too_many_regs": (("sm_89", 255, 0, 1024), (0, 0, {"registers"})),
    # 40 KiB + 1 KiB = 41984 B; 100 KiB // 41984 = 2 blocks of 8 warps.
    "sm89_shared": (("sm_89", 32, 40 * KIB, 256), (2, 16, {"shared"})),
}


@pytest.mark.parametrize("case", sorted(OCCUPANCY_CASES))
def test_occupancy_hand_computed(case):
    (arch, regs, shared, block), (blocks, warps, limiters) = OCCUPANCY_CASES[case]
    lim = rr.ARCH_LIMITS[arch]
    occ = rr.occupancy(lim, regs, shared, block)
    assert (occ.blocks_per_sm, occ.warps_per_sm) == (blocks, warps)
    assert set(occ.limited_by) == limiters
    assert occ.occupancy == pytest.approx(warps / lim.max_warps_per_sm)


def test_occupancy_dynamic_shared_over_48k_uses_opt_in_limit():
    lim = rr.ARCH_LIMITS["sm_80"]
    # 100 KiB fits sm_80's 163 KiB opt-in; 164 KiB (+1 KiB reserved) does not.
    assert rr.occupancy(lim, 32, 0, 256, dynamic_shared=100 * KIB).blocks_per_sm == 1
    assert rr.occupancy(lim, 32, 0, 256, dynamic_shared=164 * KIB).blocks_per_sm == 0


def test_arch_limits_table():
    expected = {"sm_75": (32, 16, 64), "sm_80": (64, 32, 164), "sm_86": (48, 16, 100),
                "sm_89": (48, 24, 100), "sm_90": (64, 32, 228)}
    for arch, (warps, blocks, shared_kib) in expected.items():
        lim = rr.ARCH_LIMITS[arch]
        assert (lim.max_warps_per_sm, lim.max_blocks_per_sm, lim.shared_per_sm) == \
            (warps, blocks, shared_kib * KIB)
        assert (lim.regs_per_sm, lim.max_regs_per_thread, lim.reg_granularity) == \
            (64 * KIB, 255, 256)


# --------------------------------------------------------------------------
# Parsing, on text shaped like cuobjdump's
# --------------------------------------------------------------------------

SASS_SAMPLE = """
Fatbin elf code:
================
arch = sm_80
\tcode for sm_80
\t\tFunction : _Z3fooPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   STL [R1+0x44], R5 ;
        /*0020*/              @!P0 STL.64 [R1+0x48], R6 ;
        /*0030*/                   STL.128 [R1], R8 ;
        /*0040*/                   LDL.LU R5, [R1+0x44] ;
        /*0050*/               @P1 LDL.LU.64 R6, [R1+0x48] ;
        /*0060*/                   LDL R9, [R12] ;
        /*0070*/                   LDL.U8 R10, [R1+0x50] ;
        /*0080*/                   LDG.E R4, [R2.64] ;
\t\tFunction : _Z3barPf
        /*0000*/                   EXIT ;
"""


def test_parse_sass_counts_local_traffic_by_width():
    traffic = rr.parse_sass(SASS_SAMPLE)
    assert traffic == {("sm_80", "_Z3fooPf"): (4 + 8 + 16, 4 + 8 + 4 + 1),
                       ("sm_80", "_Z3barPf"): (0, 0)}


@pytest.mark.parametrize("stack, depot, expected", [
    (96, None, (28, 17, False)),  # no PTX: all counted, cannot be sure
    (96, 0, (28, 17, True)),      # no local array: all of it is spills
    (64, 64, (0, 0, True)),       # the frame is the array: no spill slot
    (96, 64, (28, 17, False)),    # array plus spill slots: an upper bound
])
def test_split_local_traffic(stack, depot, expected):
    assert rr.split_local_traffic(28, 17, stack, depot) == expected


def test_parse_resource_usage_and_ptx():
    usage = rr.parse_resource_usage(
        "Resource usage:\n Function _Z3fooPf:\n  REG:40 STACK:16 SHARED:2048 LOCAL:0 "
        "CONSTANT[0]:360 TEXTURE:0 SURFACE:0 SAMPLER:0\n", default_arch="sm_86")
    assert usage[("sm_86", "_Z3fooPf")]["REG"] == 40
    assert usage[("sm_86", "_Z3fooPf")]["SHARED"] == 2048
    ptx = rr.parse_ptx(".visible .entry _Z3fooPf(\n.param .u64 p\n)\n{\n"
                       "\t.local .align 16 .b8 \t__local_depot0[96];\n}\n"
                       ".visible .entry _Z3barPf(\n)\n{\n}\n")
    assert ptx == {"_Z3fooPf": 96, "_Z3barPf": 0}


def test_find_cuda_binaries_does_not_import(tmp_path, monkeypatch):
    package = tmp_path / "rr_fake_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "_cuda.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (package / "_emu.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = rr.find_cuda_binaries("rr_fake_pkg")
    assert [p.name for p in found] == ["_cuda.cpython-311-x86_64-linux-gnu.so"]
    assert "rr_fake_pkg" not in sys.modules
    assert rr.find_cuda_binaries("rr_no_such_package") == []


def _run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_missing_binary_fails_unless_allowed(tmp_path):
    absent = tmp_path / "_cuda.so"
    proc = _run_tool("--binary", absent)
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "--allow-missing" in proc.stderr
    proc = _run_tool("--binary", absent, "--allow-missing")
    assert proc.returncode == 0
    assert "allow-missing" in proc.stdout
    proc = _run_tool("--binary", absent, "--allow-missing", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["missing"] is True


# --------------------------------------------------------------------------
# End to end on kernels compiled with nvcc
# --------------------------------------------------------------------------

KERNELS = r"""
__global__ void clean_kernel(const float* x, float* y, int n) {
  __shared__ float tile[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? x[i] : 0.f;
  __syncthreads();
  if (i < n) y[i] = 2.f * tile[255 - threadIdx.x];
}

__global__ void __launch_bounds__(128, 4) bounded_kernel(float* y) {
  y[blockIdx.x * 128 + threadIdx.x] = 1.f;
}

#ifdef WITH_LOCAL_MEMORY
// 64 live accumulators (indices are constants once unrolled) under
// -maxrregcount=32: ptxas must spill.
__global__ void spill_kernel(const float* x, float* y, int n) {
  float acc[64];
#pragma unroll
  for (int j = 0; j < 64; ++j) acc[j] = x[j * n + threadIdx.x];
  for (int it = 0; it < n; ++it) {
#pragma unroll
    for (int j = 0; j < 64; ++j) acc[j] = acc[j] * acc[(j + 1) % 64] + x[it];
  }
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 64; ++j) s += acc[j] * (j + 1);
  y[threadIdx.x] = s;
}

// A run-time-indexed array lives in local memory without any spill.
__global__ void local_array_kernel(const float* x, float* y, const int* idx, int n) {
  float buf[64];
  for (int j = 0; j < 64; ++j) buf[j] = x[j * n + threadIdx.x];
  float s = 0.f;
  for (int j = 0; j < n; ++j) s += buf[idx[j] & 63];
  y[threadIdx.x] = s;
}

// Both at once: the report must charge only the spill slots.
__global__ void mixed_kernel(const float* x, float* y, const int* idx, int n) {
  float buf[16];
  float acc[48];
  for (int j = 0; j < 16; ++j) buf[j] = x[j * n + threadIdx.x];
#pragma unroll
  for (int j = 0; j < 48; ++j) acc[j] = x[j * n + threadIdx.x + 7];
  for (int it = 0; it < n; ++it) {
#pragma unroll
    for (int j = 0; j < 48; ++j) acc[j] = acc[j] * acc[(j + 1) % 48] + buf[idx[it] & 15];
  }
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 48; ++j) s += acc[j] * (j + 1);
  y[threadIdx.x] = s;
}
#endif
"""


def _nvcc():
    found = shutil.which("nvcc")
    if not found and os.access("/usr/local/cuda/bin/nvcc", os.X_OK):
        found = "/usr/local/cuda/bin/nvcc"
    return found


@pytest.fixture(scope="module")
def toolchain():
    nvcc, cuobjdump = _nvcc(), rr.find_cuobjdump()
    if not nvcc:
        pytest.skip("nvcc not found: cannot compile test kernels")
    if not cuobjdump:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    return nvcc


def _compile(nvcc, workdir, args):
    source = workdir / "kernels.cu"
    source.write_text(KERNELS)
    proc = subprocess.run([nvcc, *args, "-Xptxas", "-v", str(source)], cwd=workdir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


_PTXAS_FUNC_RE = re.compile(r"Compiling entry function '(\S+)' for '(sm_\d+)'")
_PTXAS_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def _ptxas_spills(log):
    """{(arch, mangled): (spill store bytes, spill load bytes)} from ptxas -v."""
    out, current = {}, None
    for line in log.splitlines():
        m = _PTXAS_FUNC_RE.search(line)
        if m:
            current = (m.group(2), m.group(1))
            continue
        m = _PTXAS_SPILL_RE.search(line)
        if m and current:
            out[current] = (int(m.group(1)), int(m.group(2)))
            current = None
    return out


def _kernels(report_json):
    return [k for ks in report_json["binaries"].values() for k in ks]


def test_clean_cubin_passes(toolchain, tmp_path):
    cubin = tmp_path / "clean.cubin"
    _compile(toolchain, tmp_path, ["-cubin", "-arch=sm_80", "-o", str(cubin)])
    proc = _run_tool("--binary", cubin, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["offenders"] == []
    kernels = {k["name"].split("(")[0]: k for k in _kernels(report)}
    assert set(kernels) == {"clean_kernel", "bounded_kernel"}
    for k in kernels.values():
        assert k["arch"] == "sm_80"
        assert k["registers"] > 0
        assert k["spill_store_bytes"] == k["spill_load_bytes"] == 0
        assert 0 < k["occupancy"]["occupancy"] <= 1
    assert kernels["clean_kernel"]["shared_bytes"] == 256 * 4
    assert kernels["clean_kernel"]["max_threads_per_block"] is None
    assert kernels["clean_kernel"]["occupancy"]["block_size"] == 256
    assert kernels["bounded_kernel"]["max_threads_per_block"] == 128
    assert kernels["bounded_kernel"]["occupancy"]["block_size"] == 128

    text = _run_tool("--binary", cubin, "--block-size", "512")
    assert text.returncode == 0 and "clean_kernel" in text.stdout and "FAIL" not in text.stdout


def test_spilling_shared_object_fails_and_matches_ptxas(toolchain, tmp_path):
    lib = tmp_path / "libkernels.so"
    log = _compile(toolchain, tmp_path, [
        "-shared", "-Xcompiler", "-fPIC", "-DWITH_LOCAL_MEMORY", "-maxrregcount=32",
        "-gencode", "arch=compute_75,code=sm_75",
        "-gencode", "arch=compute_86,code=sm_86",
        "-gencode", "arch=compute_90,code=[sm_90,compute_90]",
        "-o", str(lib)])
    expected = _ptxas_spills(log)
    spill_name = "_Z12spill_kernelPKfPfi"
    assert {arch for arch, func in expected if func == spill_name} == {"sm_75", "sm_86", "sm_90"}
    assert all(expected[(arch, spill_name)][0] > 0 for arch in ("sm_75", "sm_86", "sm_90")), \
        "test premise: ptxas must report spills for spill_kernel"

    proc = _run_tool("--binary", lib, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    offenders = {(o["arch"], o["name"].split("(")[0]) for o in report["offenders"]}
    assert {("sm_75", "spill_kernel"), ("sm_86", "spill_kernel"),
            ("sm_90", "spill_kernel")} <= offenders
    assert not any(name in ("clean_kernel", "bounded_kernel", "local_array_kernel")
                   for _, name in offenders)
    kernels = {(k["arch"], k["mangled"]): k for k in _kernels(report)}
    assert set(kernels) == set(expected)
    for key, (stores, loads) in expected.items():
        k = kernels[key]
        if k["spill_bytes_exact"]:
            assert (k["spill_store_bytes"], k["spill_load_bytes"]) == (stores, loads), key
        else:  # local array plus spills: an upper bound that still fails the check
            assert key[1] == "_Z12mixed_kernelPKfPfPKii"
            assert k["spill_store_bytes"] >= stores > 0 and k["spill_load_bytes"] >= loads > 0
    for (arch, func), k in kernels.items():
        if func == "_Z18local_array_kernelPKfPfPKii":
            assert k["local_store_bytes"] > 0 and k["spill_store_bytes"] == 0
            assert k["ptx_local_array_bytes"] == 256

    text = _run_tool("--binary", lib)
    assert text.returncode == 1
    assert "FAIL" in text.stdout and "spill_kernel(float const*, float*, int) [sm_86]" in text.stdout


def test_cuobjdump_found_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    found = rr.find_cuobjdump()
    if found is None:
        pytest.skip("no cuobjdump in the CUDA toolkit dirs or site-packages")
    assert os.access(found, os.X_OK)


# --------------------------------------------------------------------------
# The main loop's instruction mix (parse_main_loops)
# --------------------------------------------------------------------------

LOOP_SASS = """
arch = sm_80
\t\tFunction : _Z4convPf
        /*0000*/                   LDG.E R2, [R4.64] ;
        /*0010*/                   FFMA R0, R1, R2, R0 ;
        /*0020*/                   LDGSTS.E.BYPASS.128 [R3], [R4.64] ;
        /*0030*/                   LDGSTS.E [R3+0x10], [R4.64+0x10] ;
        /*0040*/                   LDS.128 R8, [R3] ;
        /*0050*/                   LDSM.16.M88.4 R12, [R3] ;
        /*0060*/                   HMMA.1688.F32.TF32 R16, R8, R12, R16 ;
        /*0070*/                   HMMA.1688.F32.TF32 R20, R8, R14, R20 ;
        /*0080*/                   FFMA R0, R1, R2, R0 ;
        /*0090*/               @P0 BRA 0x20 ;
        /*00a0*/                   LDG.E R2, [R4.64] ;
        /*00b0*/              @!P1 BRA 0x0 ;
        /*00c0*/                   BRA 0xd0 ;
        /*00d0*/                   EXIT ;
\t\tFunction : _Z6nomathPf
        /*0000*/                   LDS R2, [R3] ;
        /*0010*/               @P0 BRA 0x0 ;
"""


def test_parse_main_loops_takes_the_loop_with_most_math():
    loops = rr.parse_main_loops(LOOP_SASS)
    # The outer loop (0x0 .. 0xb0) holds 2 FFMA + 2 HMMA, the inner one
    # (0x20 .. 0x90) 1 + 2: under 90% of the outer's, so the outer loop is
    # the main loop.
    mix = loops[("sm_80", "_Z4convPf")]
    assert (mix.ffma, mix.hmma, mix.shared_loads, mix.global_loads, mix.ldgsts) == (2, 2, 2, 4, 2)
    assert mix.per(mix.shared_loads) == 2.0 and mix.per(mix.global_loads) == 1.0
    # Drop the outer loop's own FFMA: the inner loop holds all its math and
    # is reported instead.
    assert "HMMA per shared load 2.0, per global load 1.0" in rr.format_loop_mix(mix)
    assert ("sm_80", "_Z6nomathPf") not in loops  # a loop without math is no main loop
    inner = rr.parse_main_loops(LOOP_SASS.replace("/*0010*/                   FFMA", "/*0010*/ NOP"))
    mix = inner[("sm_80", "_Z4convPf")]
    assert (mix.ffma, mix.hmma, mix.shared_loads, mix.global_loads, mix.ldgsts) == (1, 2, 2, 2, 2)


LOOP_KERNEL = r"""
#include "common/portable.cuh"
__global__ void __launch_bounds__(32) tf32_loop(const float* x, float* y, int n) {
  DC_SHARED(float[2][32][4], s);
  float c[4] = {0, 0, 0, 0};
#pragma unroll 1
  for (int i = 0; i < n; ++i) {
    dc::cp_async_cg(&s[i & 1][threadIdx.x][0], x + 128 * i + 4 * threadIdx.x);
    dc::cp_async_commit();
    dc::cp_async_wait<0>();
    __syncwarp();
    const float a[4] = {dc::lds(&s[i & 1][threadIdx.x][0]), s[i & 1][threadIdx.x][1],
                        s[i & 1][threadIdx.x][2], s[i & 1][threadIdx.x][3]};
    const float b[2] = {s[i & 1][threadIdx.x ^ 1][0], s[i & 1][threadIdx.x ^ 1][1]};
    dc::mma_m16n8k8_tf32(c, a, b, c);
  }
  y[threadIdx.x] = c[0] + c[1] + c[2] + c[3];
}
"""


def test_main_loop_of_a_compiled_tensor_core_kernel(toolchain, tmp_path):
    source = tmp_path / "loop.cu"
    source.write_text(LOOP_KERNEL)
    cubin = tmp_path / "loop.cubin"
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    proc = subprocess.run([toolchain, "-std=c++17", "-cubin", "-arch=sm_80", f"-I{csrc}", "-o",
                           str(cubin), str(source)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = _run_tool("--binary", cubin, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (kernel,) = _kernels(json.loads(proc.stdout))
    loop = kernel["main_loop"]
    assert loop["hmma"] == 1 and loop["ldgsts"] == 1 and loop["shared_loads"] >= 1
