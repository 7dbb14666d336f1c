// The emulator's semantics kernels for the sm_80 instructions that
// common/portable.cuh spells as inline PTX: cvt.rna.tf32.f32, mma.sync
// (m16n8k8 TF32), ldmatrix, and cp.async with its commit / wait groups.
// Each kernel only moves fragments or copies between global memory and the
// instruction, so the tests (tests/test_emulator_semantics.py) can check the
// instruction's lane-by-lane results against fragments they lay out
// themselves from the PTX ISA tables. Declarations: semantics.h.
#include <cstdint>

#include "common/launch.cuh"
#include "emu/selftest/semantics.h"

namespace dc::selftest {
namespace {

// (m) ------------------------------------------------------------------------
__global__ void cvt_tf32_kernel(const float* x, float* y, std::int64_t n) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = dc::cvt_rna_tf32(x[i]);
}

// (n) One mma per warp; fragments are (warp, lane, register).
__global__ void mma_tf32_kernel(const float* a, const float* b, const float* c, float* d,
                                bool round_inputs) {
  const std::int64_t lane = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float fa[4], fb[2], fc[4], fd[4];
  for (int i = 0; i < 4; ++i) {
    fa[i] = round_inputs ? dc::cvt_rna_tf32(a[4 * lane + i]) : a[4 * lane + i];
    fc[i] = c[4 * lane + i];
  }
  for (int i = 0; i < 2; ++i) {
    fb[i] = round_inputs ? dc::cvt_rna_tf32(b[2 * lane + i]) : b[2 * lane + i];
  }
  dc::mma_m16n8k8_tf32(fd, fa, fb, fc);
  for (int i = 0; i < 4; ++i) d[4 * lane + i] = fd[i];
}

// (o) The source rows (16-bit elements, rows of 8) are staged in shared
// memory; lane l passes the address of row slot[l] (16-byte rows), so the
// test decides which row each lane names.
template <int kCount, bool kTrans>
__global__ void ldmatrix_kernel(const std::uint16_t* rows, const int* slot, std::uint32_t* out) {
  DC_SHARED(std::uint16_t[32][8], staged);
  const int lane = threadIdx.x;
  for (int j = 0; j < 8; ++j) staged[lane][j] = rows[8 * lane + j];
  __syncwarp();
  std::uint32_t r[kCount];
  dc::ldmatrix<kCount, kTrans>(r, &staged[slot[lane]][0]);
  for (int i = 0; i < kCount; ++i) out[4 * lane + i] = r[i];
}

// (p) A 3-stage cp.async ring, as a pipelined main loop runs one: tile t of
// each block's x lands in slot t % 3, then every thread reads its right-hand
// neighbour's 4 floats from there: y = 2 * that. Each thread copies its 16
// bytes with one of four instruction forms (by tid % 4), zero-filled past
// element `valid` of the block's x. mode 0 is correct; mode 1 skips the
// wait, mode 2 the barrier after it, mode 3 refills a slot before the
// barrier that ends the last reads of it: each must raise AsyncCopyError.
constexpr int kRingThreads = 64;
constexpr int kRingStages = 3;

__device__ void ring_issue(const float* x, float* slot, int first, int valid) {
  const int tid = threadIdx.x;
  const int e = first + 4 * tid;  // the block's element this thread copies first
  const auto bytes = [&](int from, int count) {
    const int n = valid - from;
    return 4 * (n < 0 ? 0 : (n > count ? count : n));
  };
  float* dst = slot + 4 * tid;
  const float* src = x + e;
  switch (tid % 4) {
    case 0: dc::cp_async_cg(dst, src, bytes(e, 4)); break;
    case 1: dc::cp_async_ca<16>(dst, src, bytes(e, 4)); break;
    case 2:
      dc::cp_async_ca<8>(dst, src, bytes(e, 2));
      dc::cp_async_ca<8>(dst + 2, src + 2, bytes(e + 2, 2));
      break;
    default:
      for (int i = 0; i < 4; ++i) dc::cp_async_ca<4>(dst + i, src + i, bytes(e + i, 1));
  }
}

__global__ void async_ring_kernel(const float* x, float* y, int tiles, int valid, int mode) {
  DC_SHARED(float[kRingStages][4 * kRingThreads], ring);
  const int tid = threadIdx.x;
  const std::int64_t base = std::int64_t(blockIdx.x) * tiles * 4 * kRingThreads;
  const auto issue = [&](int tile) {
    if (tile < tiles) {
      ring_issue(x + base, &ring[tile % kRingStages][0], tile * 4 * kRingThreads, valid);
    }
    dc::cp_async_commit();  // empty past the last tile: keeps the group count
  };
  for (int s = 0; s < kRingStages - 1; ++s) issue(s);
  for (int tile = 0; tile < tiles; ++tile) {
    if (mode != 1) dc::cp_async_wait<kRingStages - 2>();
    if (mode == 3) issue(tile + kRingStages - 1);
    if (mode != 2) __syncthreads();
    const int neighbour = (tid + 1) % kRingThreads;
    for (int i = 0; i < 4; ++i) {
      const float v = dc::lds(&ring[tile % kRingStages][4 * neighbour + i]);
      y[base + tile * 4 * kRingThreads + 4 * tid + i] = 2.0f * v;
    }
    if (mode != 3) issue(tile + kRingStages - 1);
  }
  dc::cp_async_wait<0>();
}

}  // namespace

void cvt_tf32(const float* x, float* y, std::int64_t n) {
  const unsigned int threads = 128;
  launch(cvt_tf32_kernel, "cvt_tf32", LaunchConfig{dim3(blocks_for(n, threads, 65535)),
                                                   dim3(threads)},
         x, y, n);
}

void mma_tf32(const float* a, const float* b, const float* c, float* d, unsigned int warps,
              bool round_inputs) {
  launch(mma_tf32_kernel, "mma_tf32", LaunchConfig{dim3(warps), dim3(32)}, a, b, c, d,
         round_inputs);
}

void ldmatrix_rows(const std::uint16_t* rows, const int* slot, std::uint32_t* out, int count,
                   bool trans) {
  const LaunchConfig cfg{dim3(1), dim3(32)};
  if (count == 1) {
    trans ? launch(ldmatrix_kernel<1, true>, "ldmatrix_x1_trans", cfg, rows, slot, out)
          : launch(ldmatrix_kernel<1, false>, "ldmatrix_x1", cfg, rows, slot, out);
  } else if (count == 2) {
    trans ? launch(ldmatrix_kernel<2, true>, "ldmatrix_x2_trans", cfg, rows, slot, out)
          : launch(ldmatrix_kernel<2, false>, "ldmatrix_x2", cfg, rows, slot, out);
  } else {
    trans ? launch(ldmatrix_kernel<4, true>, "ldmatrix_x4_trans", cfg, rows, slot, out)
          : launch(ldmatrix_kernel<4, false>, "ldmatrix_x4", cfg, rows, slot, out);
  }
}

void async_ring(const float* x, float* y, int tiles, int valid, int mode, unsigned int blocks) {
  launch(async_ring_kernel, "async_ring", LaunchConfig{dim3(blocks), dim3(kRingThreads)}, x, y,
         tiles, valid, mode);
}

}  // namespace dc::selftest
