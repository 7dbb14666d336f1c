// Tile sizes of the conv launchers (ops/conv_fprop.cu, ops/conv_dgrad.cu,
// ops/conv_wgrad.cu), per build (DESIGN §3): one table, since the three
// passes share the main loop (kernels/conv.cuh) and so its register and
// shared-memory budgets; and the split-K goal that fprop and dgrad share.
//
// GPU: the 3x3 variant runs 128x128 blocks of 256 threads with 8x8 register
// tiles and an 8-deep K stage (2 x 8 KiB of shared memory on sm_75; a ring
// of 4 on sm_80+, kConvGpuStages), two blocks per
// SM (__launch_bounds__(256, 2): at most 128 registers, 0 spills on sm_75
// ... sm_90). The general variants' window walks need a few more registers
// (fprop's spilled at 128 on sm_86+), so they run 128x64 blocks of 128
// threads, three per SM (up to 168 registers); so does wgrad. double uses
// 4x4 register tiles so its 64-bit accumulators fit the same budgets.
//
// Emulator: 8x16 register tiles (one 16-wide AVX-512 FMA per row and step)
// and a 32-deep K stage (a quarter of the GPU's barriers per FLOP; each
// barrier switches every emulated thread). Blocks are 128 rows by 64
// columns, or 128 when the layer has more (halving the image gathers per
// FLOP, which cost more than the FMAs there), or 64 / 32 rows when the whole
// GEMM has no more (small images). Measured side by side on the 2-core dev
// box (fprop, x (4, 128, 28, 28), w (128, 128, 3, 3)): 64x64 blocks with
// 8x8 tiles 6.5 GFLOP/s under load; 128x128 with 8x16 tiles and run loads
// ~100 quiet. The float 3x3 variant goes one step further where the
// reduction is long enough (>= 128 steps): 64-deep stages, in 256x64 or
// 128x128 blocks, 8-21% faster fprop and dgrad on CIFAR- and VGG-sized
// layers (dev/conv3x3_tiles; dev/README.md); VGG's 14x14 fprop at batch 1
// moved -11% .. +14% between runs (noise or a small loss). 8x32 register
// tiles (half the threads) were 25-65% slower, 16x16 ones 0-45%.
//
// The fully connected variants have short GEMM columns (M = batch), so their
// tiles are short in M and wide in N.
//
// Split-K (conv_split_plan), for the long reductions of few-block problems
// (fully connected layers above all): fprop and dgrad split until about 264
// blocks run on a GPU (2 per SM on a 132-SM H100), in chunks of at least 256
// steps; on the emulator 16 blocks, 2048 steps (kConvSplitTarget). wgrad has
// its own (ops/conv_wgrad.cu).
#pragma once

#include "kernels/conv.cuh"

namespace dc::ops {

#if DC_GPU_CONFIG
// Shared-memory stages of the float tiles: a 4-deep cp.async ring on sm_80
// and newer wherever the pass's loaders can issue cp.async (every implicit
// GEMM of fprop, dgrad and wgrad; kernels/conv.cuh conv_uses_multistage), 2
// register-staged buffers on sm_75. 4 x 8 KiB for the 3x3 tile: two blocks
// still fit an SM, and its loaders fit the ring into the 128 registers with
// 0 spills (dgrad's with 32-bit strides: kernels/conv_dgrad.cuh).
constexpr int kConvGpuStages = 4;
template <typename T>
struct ConvTiles {
  using Conv3x3 = ConvTile<128, 128, 8, 8, 8, 2, kConvGpuStages>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = ConvTile<128, 64, 8, 8, 8, 3, kConvGpuStages>;
  using GeneralWide = General;
  using GeneralSmall = General;
  using Fc = ConvTile<32, 128, 16, 4, 8, 4, kConvGpuStages>;
};
template <>
struct ConvTiles<double> {
  using Conv3x3 = ConvTile<64, 64, 8, 4, 4, 2, 3>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = Conv3x3;
  using GeneralWide = General;
  using GeneralSmall = General;
  using Fc = ConvTile<32, 64, 16, 4, 4, 4, 3>;
};
constexpr ConvSplitTarget kConvSplitTarget{264, 256};
#else
template <typename T>
struct ConvTiles {
  // float: 64-deep K stages, half the barriers of the 32-deep General ones
  // (which the 3x3 variant falls back to when the reduction is short, see
  // visit_conv_3x3_tile). double keeps 32-deep 128-row tiles: 64-deep ones
  // would pass the 227 KiB of shared memory a block may have.
  static constexpr bool kDeep = sizeof(T) <= 4;
  using Conv3x3 = ConvTile<kDeep ? 256 : 128, 64, kDeep ? 64 : 32, 8, 16>;
  using Conv3x3Wide = ConvTile<128, 128, kDeep ? 64 : 32, 8, 16>;
  // Small images (VGG at 32x32 reaches 4x4 and 2x2): GEMM rows M <= 64 / 32.
  using Conv3x3Short = ConvTile<64, 128, 32, 8, 16>;
  using Conv3x3Tiny = ConvTile<32, 128, 32, 8, 16>;
  using General = ConvTile<128, 64, 32, 8, 16>;
  using GeneralWide = ConvTile<128, 128, 32, 8, 16>;
  // wgrad of a GEMM of at most 32 x 32 (an RGB network's first layer: 27
  // columns) with a long reduction: one warp, 4x8 register tiles, 64-deep
  // stages; 2.3-2.5x faster than the 128x64 block there (ops/conv_wgrad.cu).
  using GeneralSmall = ConvTile<32, 32, 64, 4, 8>;
  // 3x3 passes with a short reduction and at most 32 columns (the fprop of
  // an RGB image into 32 filters): 1.4-1.7x the 128x64 block there.
  using GeneralNarrow = ConvTile<128, 32, 32, 8, 16>;
  using Fc = ConvTile<16, 128, 32, 4, 16>;
};
constexpr ConvSplitTarget kConvSplitTarget{16, 2048};
#endif

// Calls visit(pass, tile, name) with the 3x3 variant's tile for `pass`
// (fprop or dgrad): short tiles when the whole GEMM has at most 32 or 64
// rows (small images), wide ones when it has more than 64 columns (filters
// for fprop, input channels for dgrad, per group); on the emulator, the
// 32-deep General ones when the reduction has under 128 steps (the narrow
// one for at most 32 columns).
template <typename T, typename Pass, typename Visit>
auto visit_conv_3x3_tile(const Pass& pass, const char* name, Visit&& visit) {
  using Tiles = ConvTiles<T>;
  if (pass.gemm_m() <= 32) return visit(pass, typename Tiles::Conv3x3Tiny{}, name);
  if (pass.gemm_m() <= 64) return visit(pass, typename Tiles::Conv3x3Short{}, name);
#if !DC_GPU_CONFIG
  // A short reduction (fprop of an RGB image: 27 steps) would be mostly
  // padding in a 64-deep stage: 9% slower than the 32-deep tiles, measured.
  // With at most 32 columns, 128x32 blocks waste none of a 64-wide one's
  // half (dev/conv3x3_tiles vgg_small 32: fprop 3 -> 32 filters at 32x32,
  // batch 16, CPU ms 6.0 / 4.0 / 4.7 / 4.0 -> 3.6 / 2.7 / 2.8 / 3.0 over
  // four runs; no split-K below 2048 steps, so the same bits).
  if (pass.gemm_k() < 128) {
    if (pass.gemm_n() > 64) return visit(pass, typename Tiles::GeneralWide{}, name);
    if (pass.gemm_n() <= 32) return visit(pass, typename Tiles::GeneralNarrow{}, name);
    return visit(pass, typename Tiles::General{}, name);
  }
#endif
  if (pass.gemm_n() > 64) return visit(pass, typename Tiles::Conv3x3Wide{}, name);
  return visit(pass, typename Tiles::Conv3x3{}, name);
}

}  // namespace dc::ops
