// Convolution: fprop, dgrad, wgrad as implicit GEMMs (CUTLASS's names).
//
//   fprop:  y[n,k,p,q]  = b[k] + sum_{c,r,s} x[n,c,p*sh-ph+r,q*sw-pw+s] w[k,c,r,s]
//           (then ReLU if asked)        GEMM  M = N*P*Q, N = K/g,   red. = C/g*R*S
//   dgrad:  dx[n,c,h,w] = sum_{k,r,s: h+ph-r = p*sh, w+pw-s = q*sw} dy[n,k,p,q] w[k,c,r,s]
//                                       GEMM  M = N*H*W, N = C/g,   red. = K/g*R*S
//   wgrad:  dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] x[n,c,p*sh-ph+r,q*sw-pw+s]
//           db[k]       = sum_{n,p,q} dy[n,k,p,q]
//                                       GEMM  M = K/g,   N = C/g*R*S, red. = N*P*Q
// (c and k run within one group; shapes and groups: kernels/conv_params.cuh.)
// Every output is written with `=`, never accumulated into.
//
// One main loop serves the three passes (conv_implicit_gemm_kernel). A pass is
// a small struct (conv_fprop.cuh, conv_dgrad.cuh, conv_wgrad.cuh) that says
// how big its GEMM is, how to gather a column of each operand (`ALoader` for
// a GEMM row index m, `BLoader` for a GEMM column index n; both walk the
// reduction index consecutively and return 0 outside the problem: padding,
// taps that land between strided outputs, tile overhang), and where element
// (m, n) of the result goes. Nothing is materialised: no im2col buffer.
//
// Main loop, per block: a kBlockM x kBlockN tile of the result. Each stage
// covers kBlockK reduction steps of both operands, staged in shared memory
// (k-major, so a thread's kThreadM / kThreadN operands are adjacent; two
// buffers, one barrier per stage), and multiplied by the tile's math policy
// (kernels/conv_mainloop.cuh): ConvTile's ConvMathSimt, where every thread
// multiplies its kThreadM x kThreadN register tile, written as
// acc[i][j] = fma(a[i], b[j], acc[i][j]) with j innermost and fully unrolled
// (g++ turns each row into packed FMAs on the emulator, DESIGN §3), or
// ConvMmaTile's ConvMathTf32 (tensor cores, TF32), which
// conv_launch_implicit_gemm substitutes for float when the process asked for
// TF32 (kernels/conv_precision.h). Tile sizes
// are template parameters; the launchers pick them per build from
// ops/conv_tiles.cuh (128x128x8 with 8x8 per thread on a GPU; 128x64x32 with
// 8x16 per thread on the emulator: a deep K step, since every barrier
// switches every emulated thread, and 16-wide rows, one AVX-512 FMA each).
//
// A pass whose operands already lie in memory in GEMM order (Winograd's
// batched GEMMs, kernels/conv_winograd.cuh) runs the same kernel without a
// stage on the emulator's own builds: conv_mainloop_direct reads them in
// place, the same FMAs in the same order (ConvMathSimt::multiply_direct), so
// the same sums; a GPU keeps the staged loops (shared memory is what feeds
// its threads' reuse there).
//
// Determinism: each result element is one thread's sum over the reduction in
// increasing k. When the reduction is split over blocks (split-K: wgrad's
// N*P*Q, the fully connected fprop's C*H*W), each split writes its partial
// sums to a workspace, [split][group][m][n], and conv_split_reduce_kernel
// adds them in split order. No floating-point atomics anywhere, so two runs
// give bitwise identical results (on one device and build).
//
// Indices: GEMM rows (N*P*Q, N*H*W) and element offsets are 64-bit; the
// reduction index is 32-bit (conv_check_params keeps it below 2^31).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common/launch.cuh"
#include "common/portable.cuh"
#include "kernels/conv_params.cuh"
#include "kernels/conv_precision.h"

namespace dc {

__device__ __forceinline__ float conv_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double conv_fma(double a, double b, double c) { return fma(a, b, c); }

}  // namespace dc

#include "kernels/conv_mainloop.cuh"  // the math policies: SIMT FMAs, TF32 mma.sync

namespace dc {

template <int kBlockM_, int kBlockN_, int kBlockK_, int kThreadM_, int kThreadN_,
          int kMinBlocks_ = 1, int kStages_ = 2>
struct ConvTile {
  static constexpr int kBlockM = kBlockM_;    // GEMM rows per block
  static constexpr int kBlockN = kBlockN_;    // GEMM columns per block
  static constexpr int kBlockK = kBlockK_;    // reduction steps per shared-memory stage
  static constexpr int kThreadM = kThreadM_;  // register tile per thread
  static constexpr int kThreadN = kThreadN_;
  static constexpr int kThreadsN = kBlockN / kThreadN;
  static constexpr int kThreads = (kBlockM / kThreadM) * kThreadsN;
  static constexpr int kMinBlocks = kMinBlocks_;  // __launch_bounds__ occupancy goal
  // Shared-memory stages: 2 stages by registers (every build), 3 or more a
  // cp.async ring (sm_80 on; conv_mainloop_multistage).
  static constexpr int kStages = kStages_;
  static_assert(kBlockM % kThreadM == 0 && kBlockN % kThreadN == 0, "whole register tiles");
  using Math = ConvMathSimt<kBlockM, kBlockN, kThreadM, kThreadN>;
};

// A tensor-core tile: the same block and stage as a ConvTile, kWarpsM x
// kWarpsN warps each multiplying its share with TF32 mma.sync.
template <int kBlockM_, int kBlockN_, int kBlockK_, int kWarpsM, int kWarpsN, int kMinBlocks_ = 1,
          int kStages_ = 2>
struct ConvMmaTile {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kBlockK = kBlockK_;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr int kStages = kStages_;
  using Math = ConvMathTf32<kBlockM, kBlockN, kWarpsM, kWarpsN>;
};

// The TF32 twin of a ConvTile: same block, stage and thread count (so the
// same loaders and split-K plan), warps laid out by conv_warp_grid.
template <typename Tile>
struct ConvTf32TileFor {
  static constexpr ConvWarpGrid kGrid =
      conv_warp_grid(Tile::kBlockM, Tile::kBlockN, Tile::kThreads);
  static_assert(kGrid.m * kGrid.n * 32 == Tile::kThreads, "whole warps");
  using type = ConvMmaTile<Tile::kBlockM, Tile::kBlockN, Tile::kBlockK, kGrid.m, kGrid.n,
                           Tile::kMinBlocks, Tile::kStages>;
};

// How the kCols x kDepth operand tile is spread over kThreads threads: a
// thread owns kColIters columns (col(tid, it)) and loads kCount consecutive
// reduction steps of each, starting at row(tid). Consecutive threads take
// consecutive columns (coalesced along m on a GPU).
template <int kCols, int kDepth, int kThreads>
struct ConvTileLoad {
  static_assert(kCols % kThreads == 0 || kThreads % kCols == 0, "columns divide threads");
  static constexpr int kColIters = kCols > kThreads ? kCols / kThreads : 1;
  static constexpr int kRows = kThreads > kCols ? kThreads / kCols : 1;
  static_assert(kDepth % kRows == 0, "kBlockK divides among a column's threads");
  static constexpr int kCount = kDepth / kRows;
  static constexpr int kColThreads = kCols < kThreads ? kCols : kThreads;

  __device__ __forceinline__ static int col(int tid, int it) {
    return tid % kColThreads + it * kThreads;
  }
  __device__ __forceinline__ static int row(int tid) { return (tid / kColThreads) * kCount; }
};

// The other orientation, for loaders that gather runs along m (kRuns): a
// thread owns reduction step row(tid) and the kCount consecutive columns
// from col(tid, 0). On the emulator an image row is then read (and the
// shared tile written) contiguously instead of one strided element at a time.
template <int kCols, int kDepth, int kThreads>
struct ConvTileLoadRuns {
  static_assert(kThreads % kDepth == 0, "whole rows per thread group");
  static constexpr int kRunThreads = kThreads / kDepth;  // threads per reduction step
  static_assert(kCols % kRunThreads == 0, "runs cover the columns");
  static constexpr int kColIters = 1;
  static constexpr int kCount = kCols / kRunThreads;
  static constexpr bool kAlongCols = true;

  __device__ __forceinline__ static int col(int tid, int) { return (tid % kRunThreads) * kCount; }
  __device__ __forceinline__ static int row(int tid) { return tid / kRunThreads; }
};

template <typename Loader, int kCols, int kDepth, int kThreads>
using ConvTileLoadFor =
    typename std::conditional<Loader::kRuns, ConvTileLoadRuns<kCols, kDepth, kThreads>,
                              ConvTileLoad<kCols, kDepth, kThreads>>::type;

}  // namespace dc

#include "kernels/conv_gather.cuh"  // the image-side loaders' pixel / tap / run walks

namespace dc {

// Whether a loader can stage its operand with cp.async: it says so with
// kAsync and has copy_async<kCount>(pass, k, k_end, dst, dst_stride), which
// copies the kCount values load() would return, element i to
// dst[i * dst_stride], zero-filling where load() returns 0. (The k-major
// stage puts consecutive k a row apart, so the copies are element-wide; a
// run loader's values are consecutive m, dst_stride 1.)
template <typename Loader, typename = void>
struct ConvLoaderAsync : std::false_type {};
template <typename Loader>
struct ConvLoaderAsync<Loader, std::void_t<decltype(Loader::kAsync)>>
    : std::integral_constant<bool, Loader::kAsync> {};

// One element of a copy_async: `src` (null: a zero) into shared `dst`.
// `any` is a valid, aligned global address for the zero-filling form, which
// reads nothing from it.
template <typename T>
__device__ __forceinline__ void conv_copy_element_async(T* dst, const T* src, const T* any) {
  cp_async_ca<sizeof(T)>(dst, src != nullptr ? src : any, src != nullptr ? int(sizeof(T)) : 0);
}

// load() and copy_async() of a loader that walks its elements one by one:
// Derived has walk<kCount>(pass, k, k_end, f), which calls f(i, address of
// element i, or null for a zero), and source(pass), the tensor it walks. The
// same addresses are read into registers or copied by cp.async.
template <typename Derived, typename T>
struct ConvWalkedLoads {
  template <typename Pass, int kCount>
  __device__ __forceinline__ void load(const Pass& pass, int k, int k_end, T (&out)[kCount]) const {
    self().template walk<kCount>(pass, k, k_end,
                                 [&](int i, const T* src) { out[i] = src ? *src : T(0); });
  }

  static constexpr bool kAsync = true;
  template <int kCount, typename Pass>
  __device__ __forceinline__ void copy_async(const Pass& pass, int k, int k_end, T* dst,
                                             int dst_stride) const {
    self().template walk<kCount>(pass, k, k_end, [&](int i, const T* src) {
      conv_copy_element_async(dst + i * dst_stride, src, Derived::source(pass));
    });
  }

 private:
  __device__ __forceinline__ const Derived& self() const {
    return static_cast<const Derived&>(*this);
  }
};

// Whether conv_implicit_gemm_kernel runs Pass under Tile as a cp.async ring.
template <typename Pass, typename Tile>
constexpr bool conv_uses_multistage() {
  return Tile::kStages >= 3 && DC_HAS_CP_ASYNC && ConvLoaderAsync<typename Pass::ALoader>::value &&
         ConvLoaderAsync<typename Pass::BLoader>::value;
}

// The main loop with two stages staged through registers (every build; the
// only one on sm_75): after multiplying stage s, each thread fetches stage
// s + 1 into the other buffer, so one barrier per stage suffices (a buffer is
// rewritten only after every thread has passed the barrier that ends its
// reads). The fetch follows the multiply rather than overlapping it: the
// staging registers would push the 8x8 float tile past the 128 registers
// that two blocks per SM allow; the other resident block hides the latency.
template <typename Pass, typename Tile, typename LoadA, typename LoadB, typename Acc>
__device__ __forceinline__ void conv_mainloop_double_buffer(
    const Pass& pass, const typename Pass::ALoader (&a_load)[LoadA::kColIters],
    const typename Pass::BLoader (&b_load)[LoadB::kColIters], int k_begin, int k_end,
    const typename Tile::Math& math, Acc& acc) {
  using T = typename Pass::Scalar;
  using Math = typename Tile::Math;
  DC_SHARED(T[2][Tile::kBlockK][Tile::kBlockM + Math::kPadA], a_tile);
  DC_SHARED(T[2][Tile::kBlockK][Tile::kBlockN + Math::kPadB], b_tile);
  const int tid = threadIdx.x;

  T a_regs[LoadA::kColIters][LoadA::kCount];
  T b_regs[LoadB::kColIters][LoadB::kCount];
  const auto fetch = [&](int k0) {
#pragma unroll
    for (int it = 0; it < LoadA::kColIters; ++it)
      a_load[it].load(pass, k0 + LoadA::row(tid), k_end, a_regs[it]);
#pragma unroll
    for (int it = 0; it < LoadB::kColIters; ++it)
      b_load[it].load(pass, k0 + LoadB::row(tid), k_end, b_regs[it]);
  };
  const auto stash = [&](int stage) {
#pragma unroll
    for (int it = 0; it < LoadA::kColIters; ++it)
#pragma unroll
      for (int i = 0; i < LoadA::kCount; ++i) {
        if constexpr (Pass::ALoader::kRuns) {
          a_tile[stage][LoadA::row(tid)][LoadA::col(tid, it) + i] = a_regs[it][i];
        } else {
          a_tile[stage][LoadA::row(tid) + i][LoadA::col(tid, it)] = a_regs[it][i];
        }
      }
#pragma unroll
    for (int it = 0; it < LoadB::kColIters; ++it)
#pragma unroll
      for (int i = 0; i < LoadB::kCount; ++i)
        b_tile[stage][LoadB::row(tid) + i][LoadB::col(tid, it)] = b_regs[it][i];
  };

  if (k_begin < k_end) {
    fetch(k_begin);
    stash(0);
  }
  __syncthreads();
  int stage = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += Tile::kBlockK) {
    math.multiply(a_tile[stage], b_tile[stage], acc);
    if (k0 + Tile::kBlockK < k_end) {
      fetch(k0 + Tile::kBlockK);
      stash(stage ^ 1);
    }
    __syncthreads();
    stage ^= 1;
  }
}

// The main loop as a ring of kStages shared-memory stages filled by
// cp.async (sm_80 on; CUTLASS's "multistage"): kStages - 1 stages are in
// flight while one is multiplied, and no staging registers are needed. At
// the top of iteration t, wait_group kStages - 2 lands stage t (this
// thread's copies) and the barrier publishes it (everyone's) and also ends
// every read of stage t - 1, whose slot the copies of stage
// t + kStages - 1 then refill: one barrier per stage. Each stage is one
// commit group, empty past the end, so the wait count stays exact.
template <typename Pass, typename Tile, typename LoadA, typename LoadB, typename Acc>
__device__ __forceinline__ void conv_mainloop_multistage(
    const Pass& pass, const typename Pass::ALoader (&a_load)[LoadA::kColIters],
    const typename Pass::BLoader (&b_load)[LoadB::kColIters], int k_begin, int k_end,
    const typename Tile::Math& math, Acc& acc) {
  using T = typename Pass::Scalar;
  using Math = typename Tile::Math;
  constexpr int kStages = Tile::kStages;
  constexpr int kLdA = Tile::kBlockM + Math::kPadA;
  constexpr int kLdB = Tile::kBlockN + Math::kPadB;
  // A run loader's kCount values are consecutive rows m of one step, so
  // adjacent in the stage too (ConvTileLoadRuns); others walk the steps.
  constexpr bool kRunsA = Pass::ALoader::kRuns;
  // The bounds spelled without the local constants: nvcc 11.8's front end
  // (GPGPU-Sim's toolkit) dies on a __shared__ array sized by them
  // ("internal error ... form_array_declarator").
  DC_SHARED(T[Tile::kStages][Tile::kBlockK][Tile::kBlockM + Math::kPadA], a_ring);
  DC_SHARED(T[Tile::kStages][Tile::kBlockK][Tile::kBlockN + Math::kPadB], b_ring);
  const int tid = threadIdx.x;
  const int tiles = k_begin < k_end ? (k_end - k_begin + Tile::kBlockK - 1) / Tile::kBlockK : 0;

  const auto issue = [&](int tile) {
    if (tile < tiles) {
      const int k0 = k_begin + tile * Tile::kBlockK;
      const int slot = tile % kStages;
#pragma unroll
      for (int it = 0; it < LoadA::kColIters; ++it)
        a_load[it].template copy_async<LoadA::kCount>(
            pass, k0 + LoadA::row(tid), k_end, &a_ring[slot][LoadA::row(tid)][LoadA::col(tid, it)],
            kRunsA ? 1 : kLdA);
#pragma unroll
      for (int it = 0; it < LoadB::kColIters; ++it)
        b_load[it].template copy_async<LoadB::kCount>(
            pass, k0 + LoadB::row(tid), k_end, &b_ring[slot][LoadB::row(tid)][LoadB::col(tid, it)],
            kLdB);
    }
    cp_async_commit();
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);
  for (int tile = 0; tile < tiles; ++tile) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    issue(tile + kStages - 1);
    math.template multiply<true>(a_ring[tile % kStages], b_ring[tile % kStages], acc);
  }
  cp_async_wait<0>();  // only empty groups remain; leaves nothing in flight
}

// Operands that already lie in memory in GEMM order (Winograd's transformed
// operands, written by its transform kernels) need no stage on the
// emulator, where shared memory is the same memory as global: copying them
// into a stage and out again cost more than the FMAs (dev/winograd). A Pass
// says so with kDirect and describes, per group, where a(k, m) and b(k, n)
// lie: a(k, m) = a.data[m * a.line_stride + k * a.k_stride] for m < a.lines,
// b(k, n) = b.data[n + k * b.k_stride] for n < b.lines, a multiple of the
// thread tile's columns (so whole rows of a thread read inside the matrix;
// columns past the GEMM's read whatever lies there, and are never stored).
template <typename T>
struct ConvDirectOperand {
  const T* data;
  std::int64_t lines;        // A: GEMM rows; B: readable columns per step
  std::int64_t line_stride;  // A: between GEMM rows (B: 1)
  std::int64_t k_stride;     // between reduction steps
};

template <typename Pass, typename = void>
struct ConvPassDirect : std::false_type {};
template <typename Pass>
struct ConvPassDirect<Pass, std::void_t<decltype(Pass::kDirect)>>
    : std::integral_constant<bool, Pass::kDirect> {};

// Whether conv_implicit_gemm_kernel reads Pass's operands straight from
// memory: the emulator's own builds only (a GPU needs the shared stage for
// its reuse across threads), under FMA math.
template <typename Pass, typename Tile>
constexpr bool conv_uses_direct() {
  return !DC_GPU_CONFIG && ConvPassDirect<Pass>::value && Tile::Math::kDirect;
}

// The main loop without a stage: each thread multiplies its register tile
// over the whole reduction, reading a and b where the pass keeps them. No
// barrier at all, so no emulated thread switch. Rows past the GEMM read its
// last row and columns past it read padding (ConvDirectOperand); the
// epilogue drops both.
template <typename Pass, typename Tile, typename Acc>
__device__ __forceinline__ void conv_mainloop_direct(const Pass& pass, int group, std::int64_t m0,
                                                     int n0, int k_begin, int k_end,
                                                     const typename Tile::Math& math, Acc& acc) {
  using T = typename Pass::Scalar;
  const ConvDirectOperand<T> a = pass.direct_a(group);
  const ConvDirectOperand<T> b = pass.direct_b(group);
  const T* a_rows[Tile::kThreadM];
#pragma unroll
  for (int i = 0; i < Tile::kThreadM; ++i) {
    const std::int64_t row = m0 + math.row(i);
    const std::int64_t m = row < a.lines ? row : a.lines - 1;
    a_rows[i] = a.data + m * a.line_stride + std::int64_t(k_begin) * a.k_stride;
  }
  // A thread whose first column is past b.lines has only columns past the
  // GEMM (b.lines is a multiple of kThreadN): any in-bounds read serves.
  const std::int64_t col = n0 + math.col(0);
  const std::int64_t n = col <= b.lines - Tile::kThreadN ? col : b.lines - Tile::kThreadN;
  const T* b_row = b.data + n + std::int64_t(k_begin) * b.k_stride;
  math.multiply_direct(a_rows, a.k_stride, b_row, b.k_stride, k_end - k_begin, acc);
}

// The epilogue straight from the accumulators: each thread writes its own
// elements (partial sums into the split-K workspace, else pass.out after
// pass.finish).
template <typename Pass, typename Tile, typename Acc>
__device__ __forceinline__ void conv_epilogue_direct(const Pass& pass,
                                                     typename Pass::Scalar* partial, int group,
                                                     int split, std::int64_t m0, int n0,
                                                     const typename Tile::Math& math,
                                                     const Acc& acc) {
  using T = typename Pass::Scalar;
  using Math = typename Tile::Math;
  const std::int64_t gemm_m = pass.gemm_m();
  const int gemm_n = pass.gemm_n();
  // Rows grow with i under every policy, so the first row past the end ends
  // the epilogue.
#pragma unroll
  for (int i = 0; i < Math::kAccM; ++i) {
    const std::int64_t m = m0 + math.row(i);
    if (m >= gemm_m) break;
    if (partial != nullptr) {
      T* row = partial + ((std::int64_t(split) * pass.groups() + group) * gemm_m + m) * gemm_n;
#pragma unroll
      for (int j = 0; j < Math::kAccN; ++j) {
        const int n = n0 + math.col(j);
        if (n < gemm_n) row[n] = acc[i][j];
      }
    } else {
      const std::int64_t base = pass.out_offset(group, m);
      const std::int64_t stride = pass.out_stride();
      if constexpr (conv_uses_direct<Pass, Tile>()) {
        // In place on the emulator: a thread's columns are adjacent, and a
        // row stored without a test per element is one packed store.
        if (n0 + math.col(Math::kAccN - 1) < gemm_n) {
          T* out = pass.out + base + std::int64_t(n0 + math.col(0)) * stride;
          DC_HOST_UNROLL(16)
          for (int j = 0; j < Math::kAccN; ++j) {
            out[j * stride] = pass.finish(group, n0 + math.col(j), acc[i][j]);
          }
          continue;
        }
      }
#pragma unroll
      for (int j = 0; j < Math::kAccN; ++j) {
        const int n = n0 + math.col(j);
        if (n < gemm_n) pass.out[base + n * stride] = pass.finish(group, n, acc[i][j]);
      }
    }
  }
}

// The epilogue through shared memory, one accumulator column j at a time:
// the block's threads park column j of their accumulators (kChunkCols block
// columns by kBlockM rows) in shared memory, then store it with consecutive
// threads on consecutive rows m, which pass.out keeps adjacent (fprop's
// pixels). The same pass.finish on the same sums: bitwise the direct
// epilogue's results.
template <typename Pass, typename Tile, typename Acc>
__device__ __forceinline__ void conv_epilogue_through_shared(const Pass& pass, int group,
                                                             std::int64_t m0, int n0,
                                                             const typename Tile::Math& math,
                                                             const Acc& acc) {
  using T = typename Pass::Scalar;
  using Math = typename Tile::Math;
  constexpr int kLd = Tile::kBlockM + 1;  // odd: a column's threads spread over the banks
  DC_SHARED(T[Math::kChunkCols][Tile::kBlockM + 1], chunk);  // kLd (nvcc 11.8, above)
  const int tid = threadIdx.x;
  const std::int64_t gemm_m = pass.gemm_m();
  const int gemm_n = pass.gemm_n();
  const std::int64_t stride = pass.out_stride();
  const int slot = math.chunk_slot();
  // A thread stores one row r (a whole number of rows per block of threads),
  // so out_offset, a 64-bit division, is computed once.
  static_assert(Tile::kThreads % Tile::kBlockM == 0, "each thread stores one row");
  constexpr int kColsPerPass = Tile::kThreads / Tile::kBlockM;
  const int r = tid % Tile::kBlockM;
  const bool row_inside = m0 + r < gemm_m;
  const std::int64_t base = row_inside ? pass.out_offset(group, m0 + r) : 0;
#pragma unroll
  for (int j = 0; j < Math::kAccN; ++j) {
    __syncthreads();  // the previous column's stores have read the chunk
#pragma unroll
    for (int i = 0; i < Math::kAccM; ++i) chunk[slot][math.row(i)] = acc[i][j];
    __syncthreads();
#pragma unroll 1
    for (int c = tid / Tile::kBlockM; c < Math::kChunkCols; c += kColsPerPass) {
      const int n = n0 + Math::chunk_col(j, c);
      if (row_inside && n < gemm_n) {
        pass.out[base + n * stride] = pass.finish(group, n, lds(&chunk[c][r]));
      }
    }
  }
}

template <typename Pass, typename Tile>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks)
    conv_implicit_gemm_kernel(Pass pass,
                              typename Pass::Scalar* partial,  // (splits, groups, M, N) or null
                              int splits, int k_per_split) {
  using T = typename Pass::Scalar;
  using Math = typename Tile::Math;

  const int tid = threadIdx.x;
  const int group = blockIdx.z / splits;
  const int split = blockIdx.z - group * splits;
  const std::int64_t m0 = std::int64_t(blockIdx.x) * Tile::kBlockM;
  const int n0 = blockIdx.y * Tile::kBlockN;
  const int k_begin = split * k_per_split;
  const int k_end = min(pass.gemm_k(), k_begin + k_per_split);

  T acc[Math::kAccM][Math::kAccN];
#pragma unroll
  for (int i = 0; i < Math::kAccM; ++i)
#pragma unroll
    for (int j = 0; j < Math::kAccN; ++j) acc[i][j] = T(0);
  const Math math(tid);

  if constexpr (conv_uses_direct<Pass, Tile>()) {
    conv_mainloop_direct<Pass, Tile>(pass, group, m0, n0, k_begin, k_end, math, acc);
  } else {
    using LoadA =
        ConvTileLoadFor<typename Pass::ALoader, Tile::kBlockM, Tile::kBlockK, Tile::kThreads>;
    using LoadB = ConvTileLoad<Tile::kBlockN, Tile::kBlockK, Tile::kThreads>;
    typename Pass::ALoader a_load[LoadA::kColIters];
    typename Pass::BLoader b_load[LoadB::kColIters];
#pragma unroll
    for (int it = 0; it < LoadA::kColIters; ++it) {
      a_load[it].init(pass, group, m0 + LoadA::col(tid, it));
    }
#pragma unroll
    for (int it = 0; it < LoadB::kColIters; ++it) {
      b_load[it].init(pass, group, n0 + LoadB::col(tid, it));
    }
    if constexpr (conv_uses_multistage<Pass, Tile>()) {
      conv_mainloop_multistage<Pass, Tile, LoadA, LoadB>(pass, a_load, b_load, k_begin, k_end,
                                                         math, acc);
      // Outputs contiguous along m (fprop's y): through shared memory, so a
      // warp stores 32 consecutive pixels of one channel instead of 32
      // channels 8 apart.
      if (partial == nullptr && pass.out_stride() != 1) {
        conv_epilogue_through_shared<Pass, Tile>(pass, group, m0, n0, math, acc);
        return;
      }
    } else {
      conv_mainloop_double_buffer<Pass, Tile, LoadA, LoadB>(pass, a_load, b_load, k_begin, k_end,
                                                            math, acc);
    }
  }
  conv_epilogue_direct<Pass, Tile>(pass, partial, group, split, m0, n0, math, acc);
}

// Split-K epilogue: out(g, m, n) = finish(sum over splits s = 0, 1, ... of
// partial[s][g][m][n]), in that order. One thread per result element.
template <typename Pass>
__global__ void conv_split_reduce_kernel(Pass pass,
                                         const typename Pass::Scalar* partial,  // (splits, G, M, N)
                                         int splits) {
  using T = typename Pass::Scalar;
  const std::int64_t gemm_m = pass.gemm_m();
  const int gemm_n = pass.gemm_n();
  const std::int64_t per_split = pass.groups() * gemm_m * gemm_n;
  const std::int64_t stride = std::int64_t(blockDim.x) * gridDim.x;
  for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < per_split;
       idx += stride) {
    T sum = partial[idx];
    for (int s = 1; s < splits; ++s) sum += partial[s * per_split + idx];
    const int n = static_cast<int>(idx % gemm_n);
    const std::int64_t gm = idx / gemm_n;
    const int group = static_cast<int>(gm / gemm_m);
    const std::int64_t m = gm - group * gemm_m;
    pass.out[pass.out_offset(group, m) + n * pass.out_stride()] = pass.finish(group, n, sum);
  }
}

// Host side, shared by the launchers (ops/conv_*.cu). Each launcher has a
// visit_<pass>_variant(p, visit) that checks the problem, picks the pass and
// tile that serve it and calls visit(pass, tile, kernel name). Its three
// entry points hand it a visitor: conv2d_<pass> one that fills in the
// pointers and calls conv_launch_implicit_gemm, the other two
// ConvWorkspaceBytes and ConvVariantName (below), so the workspace size and
// the name they report always belong to the variant that conv2d_<pass> runs.

// Throws std::invalid_argument naming `op` when p is not a well-formed
// problem (conv_check_params).
inline void conv_require_well_formed(const ConvParams& p, const char* op) {
  const std::string why = conv_check_params(p);
  if (!why.empty()) throw std::invalid_argument(std::string(op) + ": " + why);
}

// A launcher's split-K goal (per build and pass; see conv_split_plan): split
// the reduction until about `blocks` blocks run, but never into chunks
// shorter than `min_chunk` steps.
struct ConvSplitTarget {
  int blocks;
  int min_chunk;
};

// The split of one implicit GEMM's reduction over blocks.
template <typename Tile, typename Pass>
ConvSplitPlan conv_implicit_gemm_plan(const Pass& pass, ConvSplitTarget target) {
  const std::int64_t tiles = ((pass.gemm_m() + Tile::kBlockM - 1) / Tile::kBlockM) *
                             ((pass.gemm_n() + Tile::kBlockN - 1) / Tile::kBlockN) * pass.groups();
  ConvSplitPlan plan =
      conv_split_plan(tiles, pass.gemm_k(), Tile::kBlockK, target.blocks, target.min_chunk);
  if (std::int64_t(plan.splits) * pass.groups() > 65535) {  // grid.z limit
    plan = conv_split_plan(tiles, pass.gemm_k(), Tile::kBlockK, 1, target.min_chunk);
  }
  return plan;
}

// Bytes of split-K partial sums: plan.splits * groups * M * N elements when
// the reduction is split, else 0.
template <typename Pass>
std::size_t conv_implicit_gemm_workspace_bytes(const Pass& pass, const ConvSplitPlan& plan) {
  if (plan.splits <= 1) return 0;
  return std::size_t(plan.splits) * pass.groups() * pass.gemm_m() * pass.gemm_n() *
         sizeof(typename Pass::Scalar);
}

// Whether conv_launch_implicit_gemm runs Pass under TF32: float passes,
// when the process asked for it and the device has tensor cores that take
// TF32 (sm_80 on; the emulator always).
inline bool conv_device_has_tf32() {
#if defined(DC_NO_SM80_PTX)
  return false;  // built without sm_80's PTX (GPGPU-Sim): no mma.sync in the binary
#elif defined(__CUDACC__)
  int device = 0;
  int major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    return false;
  }
  return major >= 8;
#else
  return true;
#endif
}
// A Pass may opt out of TF32 with `static constexpr bool kAllowTf32 = false`.
template <typename Pass, typename = void>
struct ConvPassAllowsTf32 : std::true_type {};
template <typename Pass>
struct ConvPassAllowsTf32<Pass, std::void_t<decltype(Pass::kAllowTf32)>>
    : std::integral_constant<bool, Pass::kAllowTf32> {};

// Whether Pass has a TF32 form at all (float, not opted out); only then is
// the TF32 twin of its tile instantiated.
template <typename Pass>
constexpr bool kConvPassHasTf32 =
    std::is_same<typename Pass::Scalar, float>::value && ConvPassAllowsTf32<Pass>::value;

template <typename Pass>
bool conv_uses_tf32() {
  if constexpr (kConvPassHasTf32<Pass>) {
    return conv_precision() == ConvPrecision::kTf32 && conv_device_has_tf32();
  } else {
    return false;
  }
}

template <typename Tile, typename Pass>
void conv_launch_tile(const char* name, const char* reduce_name, const Pass& pass,
                      ConvSplitTarget target, void* workspace, std::size_t workspace_bytes,
                      Stream stream);

// Runs one implicit GEMM (kernel `name`) and, when its reduction is split,
// its split-K epilogue (`reduce_name`); `workspace` must hold
// conv_implicit_gemm_workspace_bytes for the same target. Under TF32 the
// tile's TF32 twin runs (same block shape: same plan, same workspace).
template <typename Tile, typename Pass>
void conv_launch_implicit_gemm(const char* name, const char* reduce_name, const Pass& pass,
                               ConvSplitTarget target, void* workspace,
                               std::size_t workspace_bytes, Stream stream) {
  if constexpr (kConvPassHasTf32<Pass>) {
    if (conv_uses_tf32<Pass>()) {
      conv_launch_tile<typename ConvTf32TileFor<Tile>::type>(name, reduce_name, pass, target,
                                                             workspace, workspace_bytes, stream);
      return;
    }
  }
  conv_launch_tile<Tile>(name, reduce_name, pass, target, workspace, workspace_bytes, stream);
}

template <typename Tile, typename Pass>
void conv_launch_tile(const char* name, const char* reduce_name, const Pass& pass,
                      ConvSplitTarget target, void* workspace, std::size_t workspace_bytes,
                      Stream stream) {
  using T = typename Pass::Scalar;
  const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, target);
  const std::int64_t m_tiles = (pass.gemm_m() + Tile::kBlockM - 1) / Tile::kBlockM;
  const std::int64_t n_tiles = (pass.gemm_n() + Tile::kBlockN - 1) / Tile::kBlockN;
  if (m_tiles == 0 || n_tiles == 0) return;
  if (m_tiles > 0x7fffffff || n_tiles > 65535) {
    throw std::invalid_argument(std::string(name) + ": problem too large for one grid");
  }
  const bool split = plan.splits > 1;
  if (split && workspace_bytes < conv_implicit_gemm_workspace_bytes(pass, plan)) {
    throw std::invalid_argument(std::string(name) + ": workspace too small");
  }
  T* partial = split ? static_cast<T*>(workspace) : nullptr;
  const LaunchConfig cfg{dim3(static_cast<unsigned int>(m_tiles),
                              static_cast<unsigned int>(n_tiles),
                              static_cast<unsigned int>(plan.splits * pass.groups())),
                         dim3(Tile::kThreads), 0, stream};
  launch(conv_implicit_gemm_kernel<Pass, Tile>, name, cfg, pass, partial, plan.splits,
         plan.k_per_split);
  if (split) {
    constexpr int kReduceThreads = 256;
    const std::int64_t elements = std::int64_t(pass.groups()) * pass.gemm_m() * pass.gemm_n();
    const LaunchConfig reduce{dim3(blocks_for(elements, kReduceThreads, 4096)),
                              dim3(kReduceThreads), 0, stream};
    launch(conv_split_reduce_kernel<Pass>, reduce_name, reduce, pass,
           static_cast<const T*>(partial), plan.splits);
  }
}

// Visitor for conv2d_<pass>_workspace_bytes: the bytes the variant needs.
struct ConvWorkspaceBytes {
  ConvSplitTarget target;

  template <typename Pass, typename Tile>
  std::size_t operator()(const Pass& pass, Tile, const char*) const {
    return conv_implicit_gemm_workspace_bytes(pass, conv_implicit_gemm_plan<Tile>(pass, target));
  }
};

// Visitor for conv2d_<pass>_variant: the kernel name less its
// "conv2d_<pass>_" prefix (e.g. "implicit_gemm_3x3"), with "+split_k" when
// the reduction is split and "+tf32" when it runs on tensor cores.
struct ConvVariantName {
  ConvSplitTarget target;
  const char* prefix;  // "conv2d_<pass>_"

  template <typename Pass, typename Tile>
  std::string operator()(const Pass& pass, Tile, const char* kernel_name) const {
    std::string variant = std::string(kernel_name).substr(std::strlen(prefix));
    if (conv_implicit_gemm_plan<Tile>(pass, target).splits > 1) variant += "+split_k";
    if (conv_uses_tf32<Pass>()) variant += "+tf32";
    return variant;
  }
};

}  // namespace dc

// The passes; each relies on the main loop above (and dgrad on fprop's
// row loader).
#include "kernels/conv_fprop.cuh"
#include "kernels/conv_dgrad.cuh"
#include "kernels/conv_wgrad.cuh"
