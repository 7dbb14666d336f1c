// The math of the implicit-GEMM main loop (kernels/conv.cuh): how one
// shared-memory stage of both operands is multiplied into the accumulators,
// and which result element each accumulator is. The loop, the loaders and
// the passes are the same for every policy; a tile names its policy
// (`Tile::Math`), so any Pass (fprop, dgrad, wgrad, Winograd's batched GEMM)
// runs under either.
//
// The stage is k-major: a(k, m) = a_tile[k][m], b(k, n) = b_tile[k][n], with
// rows kLdA / kLdB elements long (kBlockM / kBlockN plus the policy's
// padding).
//
//   ConvMathSimt   every thread multiplies a kThreadM x kThreadN register
//                  tile with FMAs (the float and double path; bitwise what
//                  the loop did before policies existed).
//   ConvMathTf32   tensor cores: each warp owns a kWarpM x kWarpN tile of
//                  m16n8k8 TF32 mma.sync instructions. Operands are rounded
//                  to TF32 (cvt.rna) as they are loaded into fragments (a
//                  cp.async stage reaches shared memory unconverted), and
//                  accumulate in float. Lane (g = lane / 4, t = lane % 4) of mma tile
//                  (mi, ni) holds D rows g, g + 8 and columns 2t, 2t + 1
//                  (PTX ISA), so accumulator (i, j) is row
//                  16 (i / 2) + 8 (i % 2) + g and column 8 (j / 2) + 2t + j % 2
//                  of the warp's tile.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/portable.cuh"

namespace dc {

template <int kBlockM, int kBlockN, int kThreadM, int kThreadN>
struct ConvMathSimt {
  static constexpr int kAccM = kThreadM;  // accumulators per thread: rows
  static constexpr int kAccN = kThreadN;  // and columns
  static constexpr int kPadA = 0;         // shared rows are kBlockM / kBlockN long
  static constexpr int kPadB = 0;
  static constexpr int kThreadsN = kBlockN / kThreadN;
  static constexpr const char* kName = "fp32";
  static constexpr bool kDirect = true;  // has multiply_direct

  int tm, tn;  // the thread's first row and column in the block tile

  __device__ __forceinline__ explicit ConvMathSimt(int tid)
      : tm((tid / kThreadsN) * kThreadM), tn((tid % kThreadsN) * kThreadN) {}

  __device__ __forceinline__ int row(int i) const { return tm + i; }
  __device__ __forceinline__ int col(int j) const { return tn + j; }

  // Accumulator column j of every thread covers kChunkCols block columns;
  // this thread's is chunk slot chunk_slot(), and slot c is block column
  // chunk_col(j, c) (conv_epilogue_through_shared).
  static constexpr int kChunkCols = kThreadsN;
  __device__ __forceinline__ int chunk_slot() const { return tn / kThreadN; }
  __device__ __forceinline__ static int chunk_col(int j, int c) { return c * kThreadN + j; }

  // acc[i][j] = fma(a[i], b[j], acc[i][j]) over the stage, j innermost and
  // fully unrolled. `#pragma unroll` is nvcc's spelling, DC_HOST_UNROLL g++'s
  // (each compiler ignores the other's): fully unrolled before g++
  // vectorises, the j rows become packed FMAs; left to the loop vectoriser,
  // g++ shuffled the accumulators every step (6x the instructions).
  // kFromAsync: the stage was filled by cp.async, so the emulator checks
  // each row read against copies not yet visible (one check a row, so g++
  // still vectorises; left out of the register-staged loop, where it would
  // only cost time).
  template <bool kFromAsync = false, typename T, int kDepth, int kLdA, int kLdB>
  __device__ __forceinline__ void multiply(const T (&a_tile)[kDepth][kLdA],
                                           const T (&b_tile)[kDepth][kLdB],
                                           T (&acc)[kAccM][kAccN]) const {
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      const T* a_row = &a_tile[kk][0] + tm;
      const T* b_row = &b_tile[kk][0] + tn;
      if constexpr (kFromAsync) {
        check_shared(a_row, sizeof(T) * kThreadM);
        check_shared(b_row, sizeof(T) * kThreadN);
      }
      T a[kThreadM];
      T b[kThreadN];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int i = 0; i < kThreadM; ++i) a[i] = a_row[i];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int j = 0; j < kThreadN; ++j) b[j] = b_row[j];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int i = 0; i < kThreadM; ++i) {
#pragma unroll
DC_HOST_UNROLL(16)
        for (int j = 0; j < kThreadN; ++j) acc[i][j] = conv_fma(a[i], b[j], acc[i][j]);
      }
    }
  }

  // The same FMAs over `depth` steps read straight from memory, no stage
  // (conv_mainloop_direct): a(k, row i) = a_rows[i][k * a_step], b(k, j) =
  // b_row[k * ldb + j]. Same order of operations per accumulator as
  // multiply(), so the same sums.
  template <typename T>
  __device__ __forceinline__ void multiply_direct(const T* const (&a_rows)[kThreadM],
                                                  std::int64_t a_step, const T* b_row,
                                                  std::int64_t ldb, int depth,
                                                  T (&acc)[kAccM][kAccN]) const {
    for (int kk = 0; kk < depth; ++kk) {
      T a[kThreadM];
      T b[kThreadN];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int i = 0; i < kThreadM; ++i) a[i] = a_rows[i][kk * a_step];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int j = 0; j < kThreadN; ++j) b[j] = b_row[kk * ldb + j];
#pragma unroll
DC_HOST_UNROLL(16)
      for (int i = 0; i < kThreadM; ++i) {
#pragma unroll
DC_HOST_UNROLL(16)
        for (int j = 0; j < kThreadN; ++j) acc[i][j] = conv_fma(a[i], b[j], acc[i][j]);
      }
    }
  }
};

template <int kBlockM, int kBlockN, int kWarpsM, int kWarpsN>
struct ConvMathTf32 {
  static constexpr int kWarpM = kBlockM / kWarpsM;
  static constexpr int kWarpN = kBlockN / kWarpsN;
  static_assert(kWarpM % 16 == 0 && kWarpN % 8 == 0, "whole m16n8 tiles per warp");
  static constexpr int kMmaM = kWarpM / 16;
  static constexpr int kMmaN = kWarpN / 8;
  static constexpr int kAccM = 2 * kMmaM;
  static constexpr int kAccN = 2 * kMmaN;
  // Lane (g, t) reads a(k0 + t, m0 + g): rows of kBlockM + 8 put the four t
  // rows 8 banks apart, so a warp's 32 fragment reads hit 32 banks (with
  // kBlockM a multiple of 32; likewise for b).
  static constexpr int kPadA = 8;
  static constexpr int kPadB = 8;
  static constexpr const char* kName = "tf32";
  static constexpr bool kDirect = false;  // fragments come from shared memory only

  int wm, wn;  // the warp's first row and column in the block tile
  int g, t;    // groupID and threadID_in_group

  __device__ __forceinline__ explicit ConvMathTf32(int tid) {
    const int warp = tid / 32, lane = tid % 32;
    wm = (warp / kWarpsN) * kWarpM;
    wn = (warp % kWarpsN) * kWarpN;
    g = lane / 4;
    t = lane % 4;
  }

  __device__ __forceinline__ int row(int i) const { return wm + 16 * (i / 2) + 8 * (i % 2) + g; }
  __device__ __forceinline__ int col(int j) const { return wn + 8 * (j / 2) + 2 * t + j % 2; }

  // As ConvMathSimt's: column j of the accumulators covers 4 columns per
  // warp column (one per t).
  static constexpr int kChunkCols = 4 * kWarpsN;
  __device__ __forceinline__ int chunk_slot() const { return (wn / kWarpN) * 4 + t; }
  __device__ __forceinline__ static int chunk_col(int j, int c) {
    return (c / 4) * kWarpN + 8 * (j / 2) + 2 * (c % 4) + j % 2;
  }

  template <bool kFromAsync = false, int kDepth, int kLdA, int kLdB>
  __device__ __forceinline__ void multiply(const float (&a_tile)[kDepth][kLdA],
                                           const float (&b_tile)[kDepth][kLdB],
                                           float (&acc)[kAccM][kAccN]) const {
    static_assert(kDepth % 8 == 0, "whole k8 steps per stage");
#if !DC_SM80_PTX && defined(__CUDA_ARCH__)
    // No TF32 mma before sm_80 (nor under DC_NO_SM80_PTX), and the host never launches a TF32 tile
    // there (conv_uses_tf32 runs fp32 instead). The kernel is still compiled
    // for sm_75, so it traps rather than carry an emulated mma whose
    // registers would spill; a trap, never a wrong answer, should that change.
    __trap();
#else
#pragma unroll
    for (int kk = 0; kk < kDepth; kk += 8) {
      // A fragments (PTX m16n8k8 .tf32): a0 (g, t), a1 (g + 8, t),
      // a2 (g, t + 4), a3 (g + 8, t + 4); B: b0 (k = t, n = g), b1 (t + 4, g).
      float a[kMmaM][4];
      float b[kMmaN][2];
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
        const int m = wm + 16 * mi + g;
        a[mi][0] = cvt_rna_tf32(lds(&a_tile[kk + t][m]));
        a[mi][1] = cvt_rna_tf32(lds(&a_tile[kk + t][m + 8]));
        a[mi][2] = cvt_rna_tf32(lds(&a_tile[kk + t + 4][m]));
        a[mi][3] = cvt_rna_tf32(lds(&a_tile[kk + t + 4][m + 8]));
      }
#pragma unroll
      for (int ni = 0; ni < kMmaN; ++ni) {
        const int n = wn + 8 * ni + g;
        b[ni][0] = cvt_rna_tf32(lds(&b_tile[kk + t][n]));
        b[ni][1] = cvt_rna_tf32(lds(&b_tile[kk + t + 4][n]));
      }
#pragma unroll
      for (int mi = 0; mi < kMmaM; ++mi) {
#pragma unroll
        for (int ni = 0; ni < kMmaN; ++ni) {
          // C/D: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).
          float c[4] = {acc[2 * mi][2 * ni], acc[2 * mi][2 * ni + 1], acc[2 * mi + 1][2 * ni],
                        acc[2 * mi + 1][2 * ni + 1]};
          float d[4];
          mma_m16n8k8_tf32(d, a[mi], b[ni], c);
          acc[2 * mi][2 * ni] = d[0];
          acc[2 * mi][2 * ni + 1] = d[1];
          acc[2 * mi + 1][2 * ni] = d[2];
          acc[2 * mi + 1][2 * ni + 1] = d[3];
        }
      }
    }
#endif
  }
};

// The warps of a TF32 tile with kThreads threads over a kBlockM x kBlockN
// block: split the side with more m16n8 tiles per warp, M on a tie.
struct ConvWarpGrid {
  int m, n;
};
constexpr ConvWarpGrid conv_warp_grid(int block_m, int block_n, int threads) {
  ConvWarpGrid grid{1, 1};
  while (grid.m * grid.n * 32 < threads) {
    const int mma_m = block_m / grid.m / 16, mma_n = block_n / grid.n / 8;
    if (mma_m >= 2 && mma_m >= mma_n) {
      grid.m *= 2;
    } else {
      grid.n *= 2;
    }
  }
  return grid;
}

}  // namespace dc
