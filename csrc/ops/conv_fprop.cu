// Launcher for the fprop pass of kernels/conv.cuh.
#include <cstddef>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"
#include "ops/conv_tiles.cuh"

namespace dc::ops {
namespace {

// Tiles and split-K goal per build: ops/conv_tiles.cuh.

// The image operand of the 3x3 variant: one pixel per GPU thread (a warp's
// reads coalesce), runs of pixels per emulated thread (row copies instead of
// scattered reads: 1.3x faster fprop, measured side by side). Every other
// variant uses the per-pixel loader in both builds, so the emulator's tests
// run the GPU's loader code too (the 3x3 one differs only in constants).
#if DC_GPU_CONFIG
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

// Calls visit(pass, tile, kernel name) with the variant that serves p.
template <typename T, typename Visit>
auto visit_fprop_variant(const ConvParams& p, Visit&& visit) {
  conv_require_well_formed(p, "conv2d_fprop");
  using Tiles = ConvTiles<T>;
  if (conv_can_implement_3x3(p).empty()) {
    return visit_conv_3x3_tile<T>(Fprop3x3<T>{p}, "conv2d_fprop_implicit_gemm_3x3", visit);
  }
  if (conv_can_implement_fc(p).empty()) {
    return visit(FpropFc<T>{p}, typename Tiles::Fc{}, "conv2d_fprop_implicit_gemm_fc");
  }
  if (p.group_filters() > 64) {
    return visit(FpropGeneral<T>{p}, typename Tiles::GeneralWide{}, "conv2d_fprop_implicit_gemm");
  }
  return visit(FpropGeneral<T>{p}, typename Tiles::General{}, "conv2d_fprop_implicit_gemm");
}

}  // namespace

template <typename T>
void conv2d_fprop(const ConvParams& p, const T* x, const T* w, const T* b, T* y, bool relu,
                  void* workspace, std::size_t workspace_bytes, Stream s) {
  visit_fprop_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    pass.x = x;
    pass.w = w;
    pass.b = b;
    pass.out = y;
    pass.relu = relu;
    conv_launch_implicit_gemm<decltype(tile)>(name, "conv2d_fprop_split_reduce", pass,
                                              kConvSplitTarget, workspace, workspace_bytes, s);
  });
}

template <typename T>
std::size_t conv2d_fprop_workspace_bytes(const ConvParams& p) {
  return visit_fprop_variant<T>(p, ConvWorkspaceBytes{kConvSplitTarget});
}

template <typename T>
std::string conv2d_fprop_variant(const ConvParams& p) {
  return visit_fprop_variant<T>(p, ConvVariantName{kConvSplitTarget, "conv2d_fprop_"});
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
