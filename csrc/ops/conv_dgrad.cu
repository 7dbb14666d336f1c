// Launcher for the dgrad pass of kernels/conv.cuh.
#include <cstddef>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"

namespace dc::ops {
namespace {

// Tiles per build, as for fprop (ops/conv_fprop.cu explains the choice; the
// wide tile serves 3x3 layers with more than 64 input channels per group).
#if defined(__CUDACC__)
template <typename T>
struct DgradTiles {
  using Conv3x3 = ConvTile<128, 128, 8, 8, 8, 2>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = ConvTile<128, 64, 8, 8, 8, 3>;
  using Fc = ConvTile<32, 128, 16, 4, 8, 4>;
};
template <>
struct DgradTiles<double> {
  using Conv3x3 = ConvTile<64, 64, 8, 4, 4, 2>;
  using Conv3x3Wide = Conv3x3;
  using Conv3x3Tiny = Conv3x3;
  using Conv3x3Short = Conv3x3;
  using General = Conv3x3;
  using Fc = ConvTile<32, 64, 16, 4, 4, 4>;
};
constexpr int kTargetBlocks = 264;
constexpr int kMinChunk = 256;
#else
template <typename T>
struct DgradTiles {
  using Conv3x3 = ConvTile<128, 64, 32, 8, 16>;
  using Conv3x3Wide = ConvTile<128, 128, 32, 8, 16>;
  // Small images (VGG at 32x32 reaches 4x4 and 2x2): GEMM rows M <= 64 / 32.
  using Conv3x3Short = ConvTile<64, 128, 32, 8, 16>;
  using Conv3x3Tiny = ConvTile<32, 128, 32, 8, 16>;
  using General = Conv3x3;
  using Fc = ConvTile<16, 128, 32, 4, 16>;
};
constexpr int kTargetBlocks = 16;
constexpr int kMinChunk = 2048;
#endif

// The gradient operand of the 3x3 variant: one pixel per GPU thread
// (coalesced), runs of pixels per emulated thread (ConvDgradGradRunLoader:
// 1.4x faster dgrad, measured side by side). The other variants use the
// per-pixel loader in both builds (see ops/conv_fprop.cu).
#if defined(__CUDACC__)
template <typename T>
using Dgrad3x3 = ConvDgradPass<T, ConvDgradGradLoader<T, 3, 3, 1>>;
#else
template <typename T>
using Dgrad3x3 = ConvDgradPass<T, ConvDgradGradRunLoader<T, 3, 3>>;
#endif
template <typename T>
using DgradStride1 = ConvDgradPass<T, ConvDgradGradLoader<T, 0, 0, 1>>;
template <typename T>
using DgradGeneral = ConvDgradPass<T, ConvDgradGradLoader<T, 0, 0, 0>>;

template <typename T, typename Visit>
auto visit_dgrad_variant(const ConvParams& p, Visit&& visit) {
  const std::string why = conv_check_params(p);
  if (!why.empty()) throw std::invalid_argument("conv2d_dgrad: " + why);
  using Tiles = DgradTiles<T>;
  if (conv_can_implement_3x3(p).empty()) {
    using Pass3x3 = Dgrad3x3<T>;
    const char* name = "conv2d_dgrad_implicit_gemm_3x3";
    if (p.input_pixels() <= 32) return visit(Pass3x3{p}, typename Tiles::Conv3x3Tiny{}, name);
    if (p.input_pixels() <= 64) return visit(Pass3x3{p}, typename Tiles::Conv3x3Short{}, name);
    if (p.group_channels() > 64) return visit(Pass3x3{p}, typename Tiles::Conv3x3Wide{}, name);
    return visit(Pass3x3{p}, typename Tiles::Conv3x3{}, name);
  }
  if (conv_can_implement_fc(p).empty()) {
    return visit(ConvDgradFcPass<T>{p}, typename Tiles::Fc{}, "conv2d_dgrad_implicit_gemm_fc");
  }
  if (p.stride_h == 1 && p.stride_w == 1) {
    return visit(DgradStride1<T>{p}, typename Tiles::General{},
                 "conv2d_dgrad_implicit_gemm_stride1");
  }
  return visit(DgradGeneral<T>{p}, typename Tiles::General{}, "conv2d_dgrad_implicit_gemm");
}

}  // namespace

template <typename T>
void conv2d_dgrad(const ConvParams& p, const T* dy, const T* w, T* dx, void* workspace,
                  std::size_t workspace_bytes, Stream s) {
  visit_dgrad_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    using Tile = decltype(tile);
    pass.dy = dy;
    pass.w = w;
    pass.out = dx;
    const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
    conv_launch_implicit_gemm<Tile>(name, "conv2d_dgrad_split_reduce", pass, plan, workspace,
                                    workspace_bytes, s);
  });
}

template <typename T>
std::size_t conv2d_dgrad_workspace_bytes(const ConvParams& p) {
  return visit_dgrad_variant<T>(p, [&](auto pass, auto tile, const char*) {
    using Tile = decltype(tile);
    return conv_implicit_gemm_workspace_bytes(
        pass, conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk));
  });
}

template <typename T>
std::string conv2d_dgrad_variant(const ConvParams& p) {
  return visit_dgrad_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    using Tile = decltype(tile);
    const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
    std::string variant = std::string(name).substr(sizeof("conv2d_dgrad_") - 1);
    return plan.splits > 1 ? variant + "+split_k" : variant;
  });
}

template void conv2d_dgrad<float>(const ConvParams&, const float*, const float*, float*, void*,
                                  std::size_t, Stream);
template void conv2d_dgrad<double>(const ConvParams&, const double*, const double*, double*,
                                   void*, std::size_t, Stream);
template std::size_t conv2d_dgrad_workspace_bytes<float>(const ConvParams&);
template std::size_t conv2d_dgrad_workspace_bytes<double>(const ConvParams&);
template std::string conv2d_dgrad_variant<float>(const ConvParams&);
template std::string conv2d_dgrad_variant<double>(const ConvParams&);

}  // namespace dc::ops
