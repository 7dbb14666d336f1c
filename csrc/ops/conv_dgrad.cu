// Launcher for the dgrad pass of kernels/conv.cuh.
#include <cstddef>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"
#include "ops/conv_tiles.cuh"
#include "ops/conv_winograd.h"

namespace dc::ops {
namespace {

// Tiles and split-K goal per build: ops/conv_tiles.cuh.

// The gradient operand of the 3x3 variant: one pixel per GPU thread
// (coalesced), runs of pixels per emulated thread (ConvDgradGradRunLoader:
// 1.4x faster dgrad, measured side by side). The other variants use the
// per-pixel loader in both builds (see ops/conv_fprop.cu).
#if DC_GPU_CONFIG
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

// Where cp.async exists, every dgrad variant runs the cp.async ring, in both
// precisions (their loaders fit the tiles' register budgets with 0 spills:
// the 3x3 one at 128, see kernels/conv_dgrad.cuh).
#if DC_GPU_CONFIG && DC_HAS_CP_ASYNC
template <typename Pass, typename Tile>
constexpr bool kDgradOnRing = conv_uses_multistage<Pass, Tile>() &&
                              conv_uses_multistage<Pass, typename ConvTf32TileFor<Tile>::type>();
static_assert(kDgradOnRing<Dgrad3x3<float>, ConvTiles<float>::Conv3x3> &&
                  kDgradOnRing<ConvDgradFcPass<float>, ConvTiles<float>::Fc> &&
                  kDgradOnRing<DgradStride1<float>, ConvTiles<float>::General> &&
                  kDgradOnRing<DgradGeneral<float>, ConvTiles<float>::General> &&
                  conv_uses_multistage<Dgrad3x3<double>, ConvTiles<double>::Conv3x3>() &&
                  conv_uses_multistage<ConvDgradFcPass<double>, ConvTiles<double>::Fc>(),
              "every dgrad variant runs the cp.async ring");
#endif

// Calls visit(pass, tile, kernel name) with the variant that serves p.
template <typename T, typename Visit>
auto visit_dgrad_variant(const ConvParams& p, Visit&& visit) {
  conv_require_well_formed(p, "conv2d_dgrad");
  using Tiles = ConvTiles<T>;
  if (conv_can_implement_3x3(p).empty()) {
    return visit_conv_3x3_tile<T>(Dgrad3x3<T>{p}, "conv2d_dgrad_implicit_gemm_3x3", visit);
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

// The Winograd tile conv_winograd_tile picks for p (0: implicit GEMM), after
// the well-formedness check every launcher makes first.
int dgrad_winograd_tile(const ConvParams& p, ConvAlgorithm algo) {
  conv_require_well_formed(p, "conv2d_dgrad");
  return conv_winograd_tile(p, ConvPassKind::kDgrad, algo, "conv2d_dgrad");
}

}  // namespace

template <typename T>
void conv2d_dgrad(const ConvParams& p, const T* dy, const T* w, T* dx, void* workspace,
                  std::size_t workspace_bytes, Stream s, ConvAlgorithm algo) {
  if (const int tile = dgrad_winograd_tile(p, algo)) {
    conv2d_dgrad_winograd<T>(p, tile, dy, w, dx, workspace, workspace_bytes, s);
    return;
  }
  visit_dgrad_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    pass.dy = dy;
    pass.w = w;
    pass.out = dx;
    conv_launch_implicit_gemm<decltype(tile)>(name, "conv2d_dgrad_split_reduce", pass,
                                              kConvSplitTarget, workspace, workspace_bytes, s);
  });
}

template <typename T>
std::size_t conv2d_dgrad_workspace_bytes(const ConvParams& p, ConvAlgorithm algo) {
  if (const int tile = dgrad_winograd_tile(p, algo)) {
    return conv2d_winograd_workspace_bytes<T>(p, ConvPassKind::kDgrad, tile);
  }
  return visit_dgrad_variant<T>(p, ConvWorkspaceBytes{kConvSplitTarget});
}

template <typename T>
std::string conv2d_dgrad_variant(const ConvParams& p, ConvAlgorithm algo) {
  if (const int tile = dgrad_winograd_tile(p, algo)) return conv2d_winograd_variant(tile);
  return visit_dgrad_variant<T>(p, ConvVariantName{kConvSplitTarget, "conv2d_dgrad_"});
}

template void conv2d_dgrad<float>(const ConvParams&, const float*, const float*, float*, void*,
                                  std::size_t, Stream, ConvAlgorithm);
template void conv2d_dgrad<double>(const ConvParams&, const double*, const double*, double*,
                                   void*, std::size_t, Stream, ConvAlgorithm);
template std::size_t conv2d_dgrad_workspace_bytes<float>(const ConvParams&, ConvAlgorithm);
template std::size_t conv2d_dgrad_workspace_bytes<double>(const ConvParams&, ConvAlgorithm);
template std::string conv2d_dgrad_variant<float>(const ConvParams&, ConvAlgorithm);
template std::string conv2d_dgrad_variant<double>(const ConvParams&, ConvAlgorithm);

}  // namespace dc::ops
