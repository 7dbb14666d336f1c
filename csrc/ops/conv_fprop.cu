// Launcher for the fprop pass of kernels/conv.cuh.
#include <cstddef>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"

namespace dc::ops {
namespace {

// Tiles per build (DESIGN §3).
//
// GPU: the 3x3 variant runs 128x128 blocks of 256 threads with 8x8 register
// tiles and an 8-deep K stage (2 x 8 KiB of shared memory), two blocks per
// SM (__launch_bounds__(256, 2): at most 128 registers, 0 spills on sm_75
// ... sm_90). The general variant's window walk needs a few more registers
// (it spilled at 128 on sm_86+), so it runs 128x64 blocks of 128 threads,
// three per SM (up to 168 registers). double uses 4x4 register tiles so its
// 64-bit accumulators fit the same budgets.
//
// Emulator: 8x16 register tiles (one 16-wide AVX-512 FMA per row and step)
// and a 32-deep K stage (a quarter of the GPU's barriers per FLOP; each
// barrier switches every emulated thread). Blocks are 128 rows by 64
// filters, or 128 when the layer has more (halving the image gathers per
// FLOP, which cost more than the FMAs there), or 64 / 32 rows when the whole
// GEMM has no more (small images). Measured side by side on the 2-core dev
// box (x (4, 128, 28, 28), w (128, 128, 3, 3)): 64x64 blocks with 8x8 tiles
// 6.5 GFLOP/s under load; 128x128 with 8x16 tiles and run loads ~100 quiet.
//
// The fully connected variant has short GEMM columns (M = batch), so its
// tiles are short in M and wide in N; its long reduction is split (split-K)
// until about kTargetBlocks blocks run.
#if defined(__CUDACC__)
template <typename T>
struct FpropTiles {
  using Conv3x3 = ConvTile<128, 128, 8, 8, 8, 2>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = ConvTile<128, 64, 8, 8, 8, 3>;
  using GeneralWide = General;
  using Fc = ConvTile<32, 128, 16, 4, 8, 4>;
};
template <>
struct FpropTiles<double> {
  using Conv3x3 = ConvTile<64, 64, 8, 4, 4, 2>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = Conv3x3;
  using GeneralWide = General;
  using Fc = ConvTile<32, 64, 16, 4, 4, 4>;
};
constexpr int kTargetBlocks = 264;  // 2 per SM on a 132-SM H100
constexpr int kMinChunk = 256;      // shortest reduction chunk worth a split
#else
template <typename T>
struct FpropTiles {
  using Conv3x3 = ConvTile<128, 64, 32, 8, 16>;
  using Conv3x3Wide = ConvTile<128, 128, 32, 8, 16>;
  // Small images (VGG at 32x32 reaches 4x4 and 2x2): GEMM rows M <= 64 / 32.
  using Conv3x3Short = ConvTile<64, 128, 32, 8, 16>;
  using Conv3x3Tiny = ConvTile<32, 128, 32, 8, 16>;
  using General = Conv3x3;
  using GeneralWide = Conv3x3Wide;
  using Fc = ConvTile<16, 128, 32, 4, 16>;
};
constexpr int kTargetBlocks = 16;
constexpr int kMinChunk = 2048;
#endif

// The image operand of the 3x3 variant: one pixel per GPU thread (a warp's
// reads coalesce), runs of pixels per emulated thread (row copies instead of
// scattered reads: 1.3x faster fprop, measured side by side). Every other
// variant uses the per-pixel loader in both builds, so the emulator's tests
// run the GPU's loader code too (the 3x3 one differs only in constants).
#if defined(__CUDACC__)
template <typename T>
using Fprop3x3 = ConvFpropPass<T, ConvFpropImageLoader<T, 3, 3, 1>>;
#else
template <typename T>
using Fprop3x3 = ConvFpropPass<T, ConvFpropImageRunLoader<T, 3, 3, 1>>;
#endif
template <typename T>
using FpropGeneral = ConvFpropPass<T, ConvFpropImageLoader<T, 0, 0, 0>>;
template <typename T>
using FpropFc = ConvFpropPass<T, ConvRowLoader<T, kConvOperandA>>;

// Calls visit(pass, tile, name) with the variant that serves p.
template <typename T, typename Visit>
auto visit_fprop_variant(const ConvParams& p, Visit&& visit) {
  const std::string why = conv_check_params(p);
  if (!why.empty()) throw std::invalid_argument("conv2d_fprop: " + why);
  using Tiles = FpropTiles<T>;
  const bool wide = p.group_filters() > 64;
  if (conv_can_implement_3x3(p).empty()) {
    const char* name = "conv2d_fprop_implicit_gemm_3x3";
    if (p.output_pixels() <= 32) return visit(Fprop3x3<T>{p}, typename Tiles::Conv3x3Tiny{}, name);
    if (p.output_pixels() <= 64) return visit(Fprop3x3<T>{p}, typename Tiles::Conv3x3Short{}, name);
    if (wide) return visit(Fprop3x3<T>{p}, typename Tiles::Conv3x3Wide{}, name);
    return visit(Fprop3x3<T>{p}, typename Tiles::Conv3x3{}, name);
  }
  if (conv_can_implement_fc(p).empty()) {
    return visit(FpropFc<T>{p}, typename Tiles::Fc{}, "conv2d_fprop_implicit_gemm_fc");
  }
  if (wide) {
    return visit(FpropGeneral<T>{p}, typename Tiles::GeneralWide{}, "conv2d_fprop_implicit_gemm");
  }
  return visit(FpropGeneral<T>{p}, typename Tiles::General{}, "conv2d_fprop_implicit_gemm");
}

}  // namespace

template <typename T>
void conv2d_fprop(const ConvParams& p, const T* x, const T* w, const T* b, T* y, bool relu,
                  void* workspace, std::size_t workspace_bytes, Stream s) {
  visit_fprop_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    using Tile = decltype(tile);
    pass.x = x;
    pass.w = w;
    pass.b = b;
    pass.out = y;
    pass.relu = relu;
    const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
    conv_launch_implicit_gemm<Tile>(name, "conv2d_fprop_split_reduce", pass, plan, workspace,
                                    workspace_bytes, s);
  });
}

template <typename T>
std::size_t conv2d_fprop_workspace_bytes(const ConvParams& p) {
  return visit_fprop_variant<T>(p, [&](auto pass, auto tile, const char*) {
    using Tile = decltype(tile);
    return conv_implicit_gemm_workspace_bytes(
        pass, conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk));
  });
}

template <typename T>
std::string conv2d_fprop_variant(const ConvParams& p) {
  return visit_fprop_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    using Tile = decltype(tile);
    const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
    std::string variant = std::string(name).substr(sizeof("conv2d_fprop_") - 1);
    return plan.splits > 1 ? variant + "+split_k" : variant;
  });
}

template void conv2d_fprop<float>(const ConvParams&, const float*, const float*, const float*,
                                  float*, bool, void*, std::size_t, Stream);
template void conv2d_fprop<double>(const ConvParams&, const double*, const double*,
                                   const double*, double*, bool, void*, std::size_t, Stream);
template std::size_t conv2d_fprop_workspace_bytes<float>(const ConvParams&);
template std::size_t conv2d_fprop_workspace_bytes<double>(const ConvParams&);
template std::string conv2d_fprop_variant<float>(const ConvParams&);
template std::string conv2d_fprop_variant<double>(const ConvParams&);

}  // namespace dc::ops
