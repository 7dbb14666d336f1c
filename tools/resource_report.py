#!/usr/bin/env python3
"""Resource report for deepconv's CUDA binary: registers, spills, shared
memory, stack, launch bounds and theoretical occupancy, per kernel and per
architecture.

    python tools/resource_report.py                 # the installed deepconv._cuda
    python tools/resource_report.py --binary x.so   # or a .cubin, fatbin, .o
    python tools/resource_report.py --json          # machine-readable output

Exit status: 0 when nothing spills; 1 when any function on any architecture
spills (the offenders are listed); 2 when no CUDA binary or no cuobjdump can
be found, or cuobjdump cannot read the binary. `--allow-missing` turns a
missing binary into a notice and exit 0 (machines built without nvcc).

Everything is read from the binary with `cuobjdump` (no GPU, no import of
deepconv). It is looked up on PATH, then in the CUDA toolkit directories,
then in the `nvidia-cuda-cuobjdump` wheel (`pip install nvidia-cuda-cuobjdump`).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_SPILLS = 1
EXIT_SETUP = 2

KIB = 1024
WARP_SIZE = 32


@dataclasses.dataclass(frozen=True)
class ArchLimits:
    """Per-SM limits of one architecture, as in NVIDIA's occupancy calculator
    (cuda_occupancy.h) and the CUDA guide's compute-capability table."""

    max_warps_per_sm: int
    max_blocks_per_sm: int
    shared_per_sm: int           # largest carve-out: the driver's default choice
    shared_per_block_optin: int  # above 48 KiB needs cudaFuncSetAttribute
    shared_granularity: int      # shared memory is allocated per block in these units
    reserved_shared_per_block: int  # the driver's own 1 KiB per block from sm_80 on
    regs_per_sm: int = 64 * KIB
    regs_per_block: int = 64 * KIB
    max_regs_per_thread: int = 255
    reg_granularity: int = 256   # registers are allocated per warp, 256 at a time
    sub_partitions: int = 4      # the register file is split in 4 quarters
    max_threads_per_block: int = 1024
    shared_per_block_default: int = 48 * KIB


ARCH_LIMITS = {
    "sm_75": ArchLimits(32, 16, 64 * KIB, 64 * KIB, 256, 0),
    "sm_80": ArchLimits(64, 32, 164 * KIB, 163 * KIB, 128, KIB),
    "sm_86": ArchLimits(48, 16, 100 * KIB, 99 * KIB, 128, KIB),
    "sm_89": ArchLimits(48, 24, 100 * KIB, 99 * KIB, 128, KIB),
    "sm_90": ArchLimits(64, 32, 228 * KIB, 227 * KIB, 128, KIB),
}


# --------------------------------------------------------------------------
# Occupancy arithmetic (mirrors cudaOccMaxActiveBlocksPerMultiprocessor)
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Occupancy:
    block_size: int
    blocks_per_sm: int
    warps_per_sm: int
    max_warps_per_sm: int
    occupancy: float
    limited_by: list[str]


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def _blocks_by_registers(lim: ArchLimits, regs: int, warps_per_block: int) -> int:
    if regs > lim.max_regs_per_thread:
        return 0
    if regs == 0:
        return sys.maxsize
    regs_per_warp = _round_up(regs * WARP_SIZE, lim.reg_granularity)
    # The hardware checks a block against the per-block register file as if
    # its warps were spread evenly over all four sub-partitions.
    assumed = regs_per_warp * _round_up(warps_per_block, lim.sub_partitions)
    if assumed > lim.regs_per_block or regs_per_warp * warps_per_block > lim.regs_per_block:
        return 0
    # Each sub-partition holds whole warps: the remainder of a quarter is lost.
    warps_per_quarter = (lim.regs_per_sm // lim.sub_partitions) // regs_per_warp
    return warps_per_quarter * lim.sub_partitions // warps_per_block


def _blocks_by_shared(lim: ArchLimits, static_bytes: int, dynamic_bytes: int) -> int:
    used = static_bytes + dynamic_bytes
    allocated = _round_up(used + lim.reserved_shared_per_block, lim.shared_granularity)
    per_block = lim.shared_per_block_default if used <= lim.shared_per_block_default \
        else lim.shared_per_block_optin
    if allocated > per_block + lim.reserved_shared_per_block:
        return 0
    if allocated == 0:
        return sys.maxsize
    return lim.shared_per_sm // allocated


def occupancy(lim: ArchLimits, registers: int, static_shared: int, block_size: int,
              dynamic_shared: int = 0) -> Occupancy:
    """Resident blocks and warps per SM for one kernel launched with
    `block_size` threads; `static_shared` excludes the driver's reservation."""
    warps_per_block = -(-block_size // WARP_SIZE)
    limits = {
        "warps": (lim.max_warps_per_sm // warps_per_block
                  if block_size <= lim.max_threads_per_block else 0),
        "blocks": lim.max_blocks_per_sm,
        "registers": _blocks_by_registers(lim, registers, warps_per_block),
        "shared": _blocks_by_shared(lim, static_shared, dynamic_shared),
    }
    blocks = min(limits.values())
    warps = blocks * warps_per_block
    return Occupancy(
        block_size=block_size,
        blocks_per_sm=blocks,
        warps_per_sm=warps,
        max_warps_per_sm=lim.max_warps_per_sm,
        occupancy=warps / lim.max_warps_per_sm,
        limited_by=[name for name, value in limits.items() if value == blocks],
    )


# --------------------------------------------------------------------------
# Finding the tools and the binary
# --------------------------------------------------------------------------

def _toolkit_dirs() -> list[Path]:
    dirs = [Path(os.environ[v]) / "bin" for v in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")
            if os.environ.get(v)]
    dirs.append(Path("/usr/local/cuda/bin"))
    dirs += sorted(Path(p) for p in glob.glob("/usr/local/cuda-*/bin"))
    dirs.append(Path("/opt/cuda/bin"))
    return dirs


def _wheel_candidates(tool: str) -> list[Path]:
    """The NVIDIA wheels install under the `nvidia` namespace package, e.g.
    nvidia/cu13/bin/cuobjdump (CUDA 13) or nvidia/cuda_cuobjdump/bin (12)."""
    found: list[Path] = []
    for dist in ("nvidia-cuda-cuobjdump", "nvidia-cuda-cuobjdump-cu12",
                 "nvidia-cuda-cuobjdump-cu13"):
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        found += [Path(f.locate()) for f in files if f.name == tool]
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        found += [Path(p) for p in sorted(glob.glob(os.path.join(root, "*", "bin", tool)))]
    return found


def find_cuobjdump(explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("cuobjdump")
    if on_path:
        return Path(on_path)
    for candidate in [d / "cuobjdump" for d in _toolkit_dirs()] + _wheel_candidates("cuobjdump"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_cuda_binaries(package: str = "deepconv") -> list[Path]:
    """The package's `_cuda*` extension, located without importing the
    package (importing would pull in the extension and need a driver)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    found: list[Path] = []
    for root in spec.submodule_search_locations or []:
        for pattern in ("_cuda*.so", "_cuda*.pyd"):
            found += sorted(Path(p) for p in glob.glob(os.path.join(root, pattern)))
    return found


# --------------------------------------------------------------------------
# Parsing cuobjdump's output
# --------------------------------------------------------------------------

# An ELF in cuobjdump's dumps is introduced by "arch = sm_80" (inside a
# fatbin), "64-bit ELF: ... sm=80" (-elf) or "code for sm_80" (-sass); a bare
# .cubin gets only the latter two, and -res-usage then names no arch at all.
_ARCH_RE = re.compile(r"^\s*(?:arch = (sm_\w+)|code for (sm_\w+)|\d+-bit ELF:.*\bsm=(\w+),)")


def _arch_of(line: str) -> str | None:
    m = _ARCH_RE.match(line)
    if not m:
        return None
    return m.group(1) or m.group(2) or "sm_" + m.group(3)


def _elf_starts(line: str) -> bool:
    return line.startswith("Fatbin elf code:") or line.startswith("Fatbin ptx code:")


_RES_FUNC_RE = re.compile(r"^\s*Function (\S+):\s*$")
_RES_FIELD_RE = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")


def parse_resource_usage(text: str, default_arch: str | None) -> dict[tuple[str, str], dict]:
    """{(arch, mangled name): {"REG": .., "STACK": .., "SHARED": .., "LOCAL": ..}}"""
    out: dict[tuple[str, str], dict] = {}
    arch, func = default_arch, None
    for line in text.splitlines():
        arch = _arch_of(line) or arch
        m = _RES_FUNC_RE.match(line)
        if m:
            func = m.group(1)
            continue
        if func and arch and "REG:" in line:
            out[(arch, func)] = {k: int(v) for k, v in _RES_FIELD_RE.findall(line)}
            func = None
    return out


_SECTION_ROW_RE = re.compile(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s.*\s(\.nv\.\S+)\s*$")
_INFO_SECTION_RE = re.compile(r"^\.nv\.info\.(\S+)\s*$")


@dataclasses.dataclass
class _ElfFacts:
    functions: set[str] = dataclasses.field(default_factory=set)
    max_threads: dict[str, int] = dataclasses.field(default_factory=dict)
    # On sm_90 (toolkit 12.x/13.x) a kernel's .nv.shared section already
    # holds the driver's 1 KiB reservation, marked by .nv.shared.reserved.*.
    reserved_in_section: bool = False


def parse_elf(text: str) -> dict[str, list[_ElfFacts]]:
    """Launch bounds (EIATTR_MAX_THREADS) per function, and whether the
    shared-memory figure includes the reservation, per arch and per ELF."""
    out: dict[str, list[_ElfFacts]] = {}
    facts, arch, info_func, want_value = None, None, None, False
    for line in text.splitlines():
        if _elf_starts(line):
            facts, arch = None, None
        new_arch = _arch_of(line)
        if new_arch and facts is None:
            arch, facts = new_arch, _ElfFacts()
            out.setdefault(arch, []).append(facts)
        if facts is None:
            continue
        row = _SECTION_ROW_RE.match(line)
        if row and row.group(1).startswith(".nv.shared.reserved"):
            facts.reserved_in_section = True
        m = _INFO_SECTION_RE.match(line)
        if m:
            info_func, want_value = m.group(1), False
            facts.functions.add(info_func)
        elif "EIATTR_MAX_THREADS" in line:
            want_value = True
        elif want_value and line.strip().startswith("Value:"):
            dims = [int(v, 16) for v in re.findall(r"0x[0-9a-f]+", line)]
            if info_func and dims:
                facts.max_threads[info_func] = _product(dims)
            want_value = False
    return out


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result


# How spills are measured. ptxas's "N bytes spill stores / M bytes spill
# loads" is not recorded anywhere in the binary (the ELF's .nv.info carries
# register count, frame size and stack size, but no spill attribute), and
# the stack frame (STACK) holds spill slots and local arrays alike, so it
# says how much local memory a thread owns, not what it is for. The binary
# does hold the SASS, and every spill is a local-memory instruction: STL
# stores a register, LDL (often LDL.LU, "last use") reloads it. ptxas counts
# spill bytes statically, as the summed access widths of those
# instructions, so summing the widths of a function's STL/LDL reproduces
# ptxas's figures (tests/test_resource_report.py checks this against
# `ptxas -v` on several archs).
#
# Local arrays (a thread-private array indexed at run time, or whose address
# escapes) are served by STL/LDL too, and where they sit in the frame varies
# by arch (bottom on sm_80/sm_90, top on sm_75/sm_86 in our tests), so the
# SASS cannot split their traffic from spills by address. The PTX can size
# them: each shows as `.local .b8 __local_depotN[D]`. So, when the binary
# embeds PTX for the function (deepconv's does: compute_90), the frame is
# compared with the depot: a frame no larger than the depot has no room for
# spill slots, so its traffic is all the array's (spills = 0, exact); a
# larger frame holds spill slots, and the whole traffic is reported as an
# upper bound on the spills (flagged inexact). With no local array in the
# PTX, or no PTX for the function, every local access is counted as a spill:
# exact for the first, conservative for the second. The pass/fail verdict
# is therefore exact whenever PTX is present. The depot size, read from
# whatever PTX the binary carries, is applied to every arch: the front end
# makes the same local-array decision for each target of the same source.
_SASS_FUNC_RE = re.compile(r"^\s*Function\s*:\s*(\S+)\s*$")
_SASS_INSN_RE = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)\b")
_LOCAL_WIDTHS = {"128": 16, "64": 8, "U16": 2, "S16": 2, "U8": 1, "S8": 1}


def local_access_bytes(opcode: str) -> tuple[int, int]:
    """(store bytes, load bytes) of one SASS instruction's local traffic."""
    base, *modifiers = opcode.split(".")
    if base not in ("STL", "LDL"):
        return 0, 0
    width = next((_LOCAL_WIDTHS[m] for m in modifiers if m in _LOCAL_WIDTHS), 4)
    return (width, 0) if base == "STL" else (0, width)


def parse_sass(text: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(arch, mangled name): (local store bytes, local load bytes)}"""
    # A template kernel instantiated in several translation units appears once
    # per unit's ELF: keep one copy's count (the largest), not their sum.
    copies: dict[tuple[str, str], list[list[int]]] = {}
    arch, counts = None, None
    for line in text.splitlines():
        arch = _arch_of(line) or arch
        m = _SASS_FUNC_RE.match(line)
        if m and arch:
            counts = [0, 0]
            copies.setdefault((arch, m.group(1)), []).append(counts)
            continue
        insn = _SASS_INSN_RE.match(line)
        if insn and counts is not None:
            stored, loaded = local_access_bytes(insn.group(1))
            counts[0] += stored
            counts[1] += loaded
    return {key: tuple(max(found, key=sum)) for key, found in copies.items()}


# The main loop's instruction mix. A loop in SASS is a backward branch
# (BRA to a lower address): its body is [target, branch]. A kernel's main
# loop is taken to be the loop whose body holds the most math instructions
# (FFMA / DFMA / HMMA: the conv kernels' reduction over k, fully unrolled
# within a stage); in it are counted the shared-memory loads (LDS, LDSM)
# and the global loads (LDG, and LDGSTS: cp.async's global-to-shared copy),
# so "math per shared load" and "math per global load" say how well a stage
# feeds the FMA pipes or tensor cores. Static counts, per pass of the loop.
_SASS_ADDR_RE = re.compile(r"^\s*/\*([0-9a-f]+)\*/")
_SASS_BRANCH_RE = re.compile(r"\bBRA(?:\.[A-Z.]+)?\s+(?:`?\(?)0x([0-9a-f]+)")
_MATH_OPS = ("FFMA", "DFMA", "HMMA")
_SHARED_LOADS = ("LDS", "LDSM")
_GLOBAL_LOADS = ("LDG", "LDGSTS")


@dataclasses.dataclass(frozen=True)
class LoopMix:
    ffma: int      # FFMA + DFMA
    hmma: int
    shared_loads: int
    global_loads: int
    ldgsts: int    # of global_loads: cp.async copies

    @property
    def math(self) -> int:
        return self.ffma + self.hmma

    def per(self, loads: int) -> float | None:
        return self.math / loads if loads else None


def _loop_mix(insns: list[tuple[int, str]], lo: int, hi: int) -> LoopMix:
    counts = {"ffma": 0, "hmma": 0, "shared": 0, "global": 0, "ldgsts": 0}
    for addr, op in insns:
        if not lo <= addr <= hi:
            continue
        base = op.split(".")[0]
        if base in ("FFMA", "DFMA"):
            counts["ffma"] += 1
        elif base == "HMMA":
            counts["hmma"] += 1
        elif base in _SHARED_LOADS:
            counts["shared"] += 1
        elif base in _GLOBAL_LOADS:
            counts["global"] += 1
            counts["ldgsts"] += base == "LDGSTS"
    return LoopMix(counts["ffma"], counts["hmma"], counts["shared"], counts["global"],
                   counts["ldgsts"])


def main_loop_mix(insns: list[tuple[int, str]], branches: list[tuple[int, int]]) -> LoopMix | None:
    """The mix of the main loop: of the loops (backward branches: (branch
    address, target)), the one with the most math, or the innermost loop
    nested in it that still holds 90% of that math (an outer loop around the
    main loop adds little of its own). None when no loop has any math."""
    loops = [(target, at, _loop_mix(insns, target, at)) for at, target in branches if target <= at]
    loops = [loop for loop in loops if loop[2].math]
    if not loops:
        return None
    lo, hi, best = max(loops, key=lambda loop: loop[2].math)
    inner = [loop for loop in loops
             if lo <= loop[0] and loop[1] <= hi and loop[2].math >= 0.9 * best.math]
    return min(inner, key=lambda loop: loop[1] - loop[0])[2]


def parse_main_loops(text: str) -> dict[tuple[str, str], LoopMix]:
    """{(arch, mangled name): the main loop's mix} for functions with a loop
    doing math (see the note above)."""
    out: dict[tuple[str, str], LoopMix] = {}
    arch, func = None, None
    insns: list[tuple[int, str]] = []
    branches: list[tuple[int, int]] = []

    def finish():
        if func and arch:
            mix = main_loop_mix(insns, branches)
            if mix is not None:
                out.setdefault((arch, func), mix)

    for line in text.splitlines():
        new_arch = _arch_of(line)
        m = _SASS_FUNC_RE.match(line)
        if m or new_arch:
            finish()
            arch = new_arch or arch
            func = m.group(1) if m else None
            insns, branches = [], []
            continue
        insn = _SASS_INSN_RE.match(line)
        addr = _SASS_ADDR_RE.match(line)
        if insn and addr:
            at = int(addr.group(1), 16)
            insns.append((at, insn.group(1)))
            branch = _SASS_BRANCH_RE.search(line)
            if branch:
                branches.append((at, int(branch.group(1), 16)))
    finish()
    return out


def split_local_traffic(stores: int, loads: int, stack_bytes: int,
                        depot_bytes: int | None) -> tuple[int, int, bool]:
    """(spill store bytes, spill load bytes, exact) from a function's local
    traffic, frame size and PTX local-array size (see the note above)."""
    if depot_bytes is None:
        return stores, loads, stores == loads == 0
    if depot_bytes == 0:
        return stores, loads, True
    if stack_bytes <= depot_bytes:
        return 0, 0, True
    return stores, loads, False


_PTX_FUNC_RE = re.compile(r"^\s*(?:\.visible\s+|\.weak\s+|\.extern\s+)*\.(?:entry|func)\s+"
                          r"(?:\([^)]*\)\s*)?([\w$.]+)")
_PTX_DEPOT_RE = re.compile(r"__local_depot\d+\[(\d+)\]")


def parse_ptx(text: str) -> dict[str, int]:
    """{mangled name: bytes of local arrays in its PTX}, largest over PTX
    archs; a function absent from the result has no PTX in the binary."""
    out: dict[str, int] = {}
    func = None
    for line in text.splitlines():
        m = _PTX_FUNC_RE.match(line)
        if m:
            func = m.group(1)
            out.setdefault(func, 0)
            continue
        depot = _PTX_DEPOT_RE.search(line)
        if depot and func:
            out[func] = max(out.get(func, 0), int(depot.group(1)))
    return out


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

@dataclasses.dataclass
class KernelReport:
    name: str
    mangled: str
    arch: str
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    spill_bytes_exact: bool  # False: an upper bound that includes local-array traffic
    local_store_bytes: int   # all STL/LDL traffic, spills and local arrays
    local_load_bytes: int
    shared_bytes: int
    stack_bytes: int
    local_bytes: int
    max_threads_per_block: int | None
    ptx_local_array_bytes: int | None  # None: no PTX to tell arrays from spills
    occupancy: Occupancy | None
    main_loop: LoopMix | None = None  # the loop with the most math (parse_main_loops)

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


class ReportError(Exception):
    """A binary or tool problem; exit status 2."""


def _run(cuobjdump: Path, flag: str, binary: Path, check: bool = True) -> str:
    proc = subprocess.run([str(cuobjdump), flag, str(binary)],
                          capture_output=True, text=True, errors="replace")
    if check and proc.returncode != 0:
        raise ReportError(f"{cuobjdump.name} {flag} {binary} failed: "
                          f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout if proc.returncode == 0 else ""


def demangle(names: list[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    proc = subprocess.run([filt], input="\n".join(names) + "\n",
                          capture_output=True, text=True)
    pretty = proc.stdout.splitlines()
    if proc.returncode != 0 or len(pretty) != len(names):
        return {n: n for n in names}
    return dict(zip(names, pretty))


def _elf_facts_for(facts: list[_ElfFacts], func: str) -> _ElfFacts:
    """The ELF (of several for one arch: one per translation unit) that
    defines kernel `func`. A device function has no .nv.info section of its
    own; it gets the arch's launch-bound-free facts."""
    for f in facts:
        if func in f.functions:
            return f
    return _ElfFacts(reserved_in_section=any(f.reserved_in_section for f in facts))


def collect(binary: Path, cuobjdump: Path, block_size: int,
            dynamic_shared: int) -> list[KernelReport]:
    elf = parse_elf(_run(cuobjdump, "-elf", binary))
    default_arch = next(iter(elf)) if len(elf) == 1 else None
    usage = parse_resource_usage(_run(cuobjdump, "-res-usage", binary), default_arch)
    sass_text = _run(cuobjdump, "-sass", binary)
    sass = parse_sass(sass_text)
    loops = parse_main_loops(sass_text)
    ptx = parse_ptx(_run(cuobjdump, "-ptx", binary, check=False))
    names = demangle(sorted({func for _, func in usage}))
    reports = []
    for (arch, func), res in sorted(usage.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        facts = _elf_facts_for(elf.get(arch, []), func)
        shared = res.get("SHARED", 0)
        if facts.reserved_in_section and shared >= KIB:
            shared -= KIB
        bound = facts.max_threads.get(func)
        stores, loads = sass.get((arch, func), (0, 0))
        spill_st, spill_ld, exact = split_local_traffic(
            stores, loads, res.get("STACK", 0), ptx.get(func))
        lim = ARCH_LIMITS.get(arch)
        occ = occupancy(lim, res.get("REG", 0), shared, bound or block_size,
                        dynamic_shared) if lim else None
        reports.append(KernelReport(
            name=names.get(func, func), mangled=func, arch=arch,
            registers=res.get("REG", 0), spill_store_bytes=spill_st, spill_load_bytes=spill_ld,
            spill_bytes_exact=exact, local_store_bytes=stores, local_load_bytes=loads,
            shared_bytes=shared, stack_bytes=res.get("STACK", 0),
            local_bytes=res.get("LOCAL", 0), max_threads_per_block=bound,
            ptx_local_array_bytes=ptx.get(func), occupancy=occ,
            main_loop=loops.get((arch, func))))
    return reports


def _offender_line(r: KernelReport) -> str:
    line = (f"  {r.name} [{r.arch}]: {r.spill_store_bytes} B spill stores, "
            f"{r.spill_load_bytes} B spill loads, {r.stack_bytes} B stack, "
            f"{r.registers} registers")
    if r.ptx_local_array_bytes is None:
        line += " (no PTX in the binary to tell local arrays apart: all local traffic counted)"
    elif not r.spill_bytes_exact:
        line += (f" (upper bound: includes the traffic of its {r.ptx_local_array_bytes} B "
                 f"local array; the frame exceeds the array, so it does spill)")
    return line


def format_loop_mix(mix: LoopMix) -> str:
    def ratio(value):
        return f"{value:.1f}" if value is not None else "-"
    kind = "HMMA" if mix.hmma else "FFMA"
    return (f"main loop: {mix.ffma} FFMA, {mix.hmma} HMMA, {mix.shared_loads} shared loads, "
            f"{mix.global_loads} global loads ({mix.ldgsts} LDGSTS); {kind} per shared load "
            f"{ratio(mix.per(mix.shared_loads))}, per global load {ratio(mix.per(mix.global_loads))}")


def format_text(binary: Path, reports: list[KernelReport]) -> str:
    lines = [f"{binary}", ""]
    header = (f"  {'arch':<6} {'regs':>4} {'spill st/ld':>11} {'local st/ld':>11} "
              f"{'smem':>6} {'stack':>5} {'bound':>5} {'block':>5} "
              f"{'blk/SM':>6} {'warps/SM':>8} {'occ':>5}  limited by")
    current = None
    for r in reports:
        if r.mangled != current:
            current = r.mangled
            lines += [r.name, header]
        occ = r.occupancy
        occ_cols = (f"{occ.block_size:>5} {occ.blocks_per_sm:>6} "
                    f"{occ.warps_per_sm:>3}/{occ.max_warps_per_sm:<4} "
                    f"{occ.occupancy:>5.0%}  {', '.join(occ.limited_by)}"
                    if occ else f"{'-':>5} {'-':>6} {'-':>8} {'-':>5}  (no limits known for arch)")
        spill = f"{'<=' if not r.spill_bytes_exact else ''}{r.spill_store_bytes}/{r.spill_load_bytes}"
        array = f"{r.local_store_bytes}/{r.local_load_bytes}"
        bound = str(r.max_threads_per_block) if r.max_threads_per_block else "-"
        flag = "  << SPILLS" if r.spills else ""
        lines.append(f"  {r.arch:<6} {r.registers:>4} {spill:>11} {array:>11} "
                     f"{r.shared_bytes:>6} {r.stack_bytes + r.local_bytes:>5} {bound:>5} "
                     f"{occ_cols}{flag}")
        if r.main_loop is not None and "conv" in r.name:
            lines.append("         " + format_loop_mix(r.main_loop))
    lines += ["", "(main loop, conv kernels: the loop with the most FFMA/DFMA/HMMA, its static "
                  "counts per pass and math per shared load (LDS, LDSM) and per global load "
                  "(LDG, LDGSTS = cp.async))",
              "(sizes in bytes; spill and local traffic (spills plus local arrays) are "
                  "static SASS STL/LDL bytes; smem is static shared memory per block; stack is the "
                  "per-thread local frame; bound is __launch_bounds__)"]
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", action="append", type=Path,
                   help="CUDA binary to read (.so, .cubin, fatbin, .o); may be repeated. "
                        "Default: the installed deepconv package's _cuda*.so")
    p.add_argument("--block-size", type=int, default=256,
                   help="threads per block for occupancy of kernels without "
                        "__launch_bounds__ (default 256)")
    p.add_argument("--dynamic-shared", type=int, default=0, metavar="BYTES",
                   help="dynamic shared memory per block assumed for occupancy (default 0)")
    p.add_argument("--cuobjdump", help="path to cuobjdump (default: searched)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit 0 with a notice when no CUDA binary is found")
    args = p.parse_args(argv)
    if not 1 <= args.block_size <= 1024:
        p.error("--block-size must be between 1 and 1024")
    if args.dynamic_shared < 0:
        p.error("--dynamic-shared must be >= 0")
    return args


def _missing(args: argparse.Namespace, message: str) -> int:
    if args.allow_missing:
        notice = f"resource_report: {message}; nothing to check (--allow-missing)."
        print(json.dumps({"missing": True, "notice": notice}) if args.json else notice)
        return EXIT_OK
    print(f"resource_report: error: {message}.\n  Build deepconv with nvcc available, "
          f"pass --binary PATH, or --allow-missing on machines built without nvcc.",
          file=sys.stderr)
    return EXIT_SETUP


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    binaries = args.binary or find_cuda_binaries()
    if not binaries:
        return _missing(args, "no CUDA binary found (no deepconv/_cuda*.so installed)")
    absent = [str(b) for b in binaries if not b.is_file()]
    if absent:
        return _missing(args, f"CUDA binary not found: {', '.join(absent)}")
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if cuobjdump is None:
        print("resource_report: error: cuobjdump not found on PATH, in the CUDA toolkit "
              "or in site-packages; `pip install nvidia-cuda-cuobjdump`.", file=sys.stderr)
        return EXIT_SETUP
    try:
        per_binary = {b: collect(b, cuobjdump, args.block_size, args.dynamic_shared)
                      for b in binaries}
    except ReportError as err:
        print(f"resource_report: error: {err}", file=sys.stderr)
        return EXIT_SETUP
    offenders = [r for reports in per_binary.values() for r in reports if r.spills]
    if args.json:
        print(json.dumps({
            "cuobjdump": str(cuobjdump),
            "binaries": {str(b): [dataclasses.asdict(r) for r in reports]
                         for b, reports in per_binary.items()},
            "offenders": [{"name": r.name, "mangled": r.mangled, "arch": r.arch}
                          for r in offenders],
            "ok": not offenders,
        }, indent=2))
    else:
        for binary, reports in per_binary.items():
            print(format_text(binary, reports) if reports
                  else f"{binary}: no device functions found")
            print()
        print(f"(read with {cuobjdump}; occupancy uses __launch_bounds__ where declared, "
              f"else --block-size {args.block_size})")
    if offenders:
        # In JSON mode stdout carries only the JSON document.
        stream = sys.stderr if args.json else sys.stdout
        print(f"\nresource_report: FAIL: {len(offenders)} function/arch pair(s) spill "
              f"registers to local memory:", file=stream)
        for r in offenders:
            print(_offender_line(r), file=stream)
        return EXIT_SPILLS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
