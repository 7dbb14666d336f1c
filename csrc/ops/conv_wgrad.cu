// Launcher for the wgrad pass (and the bias gradient) of kernels/conv.cuh.
#include <cstddef>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"
#include "ops/conv_tiles.cuh"
#include "ops/conv_winograd.h"

namespace dc::ops {
namespace {

// wgrad's GEMM is small (K/g x C/g*R*S) and its reduction (N*P*Q) long, so
// split-K does most of the work of filling the device: the reduction is cut
// into fixed chunks until about kSplitTarget.blocks blocks run. The tiles are
// the general ones of ops/conv_tiles.cuh (see wgrad_takes_wide_tile).
#if DC_GPU_CONFIG
constexpr ConvSplitTarget kSplitTarget{264, 512};
constexpr int kBiasThreads = 256;
#else
constexpr ConvSplitTarget kSplitTarget{16, 2048};
constexpr int kBiasThreads = 64;
#endif

// Whether wgrad takes the wide general tile (128x128 on the emulator; on a
// GPU the two are one tile): when the GEMM has more than 64 columns (C/g *
// R * S) and the wide tile leaves the split of the reduction as it was, so dw
// keeps its bits (every output's sum then runs over the same steps in the
// same order; only the blocks are cut differently). Measured side by side
// (dev/conv3x3_tiles vgg_small: benchmarks/train_step.py's layers, batch 16,
// CPU ms of 128x64 -> 128x128 blocks): 64->128 at 8x8 7.0 -> 6.1, 128->128
// at 8x8 10.5 -> 9.1, 128->256 at 4x4 5.8 -> 5.6, 256->256 at 4x4 11.2 ->
// 10.2, at 2x2 3.5 -> 3.1; 3->32 at 32x32 (27 columns) lost, 9.7 -> 16.3.
template <typename Tiles, typename Pass>
bool wgrad_takes_wide_tile(const Pass& pass) {
  using Narrow = typename Tiles::General;
  using Wide = typename Tiles::GeneralWide;
  if (pass.gemm_n() <= 64) return false;
  const ConvSplitPlan narrow = conv_implicit_gemm_plan<Narrow>(pass, kSplitTarget);
  const ConvSplitPlan wide = conv_implicit_gemm_plan<Wide>(pass, kSplitTarget);
  return narrow.splits == wide.splits && narrow.k_per_split == wide.k_per_split;
}

// Calls visit(pass, tile, kernel name) with wgrad's tile, like the other
// launchers' visit_<pass>_variant.
template <typename T, typename Visit>
auto visit_wgrad_variant(const ConvParams& p, Visit&& visit) {
  conv_require_well_formed(p, "conv2d_wgrad");
  using Tiles = ConvTiles<T>;
  const ConvWgradPass<T> pass{p};
  if (wgrad_takes_wide_tile<Tiles>(pass)) {
    return visit(pass, typename Tiles::GeneralWide{}, "conv2d_wgrad_implicit_gemm");
  }
  return visit(pass, typename Tiles::General{}, "conv2d_wgrad_implicit_gemm");
}

// The Winograd tile conv_winograd_tile picks for p (0: implicit GEMM), after
// the well-formedness check every launcher makes first.
int wgrad_winograd_tile(const ConvParams& p, ConvAlgorithm algo) {
  conv_require_well_formed(p, "conv2d_wgrad");
  return conv_winograd_tile(p, ConvPassKind::kWgrad, algo, "conv2d_wgrad");
}

}  // namespace

template <typename T>
void conv2d_wgrad(const ConvParams& p, const T* x, const T* dy, T* dw, T* db, void* workspace,
                  std::size_t workspace_bytes, Stream s, ConvAlgorithm algo) {
  if (const int tile = wgrad_winograd_tile(p, algo)) {
    conv2d_wgrad_winograd<T>(p, tile, x, dy, dw, db, workspace, workspace_bytes, s);
    return;
  }
  visit_wgrad_variant<T>(p, [&](auto pass, auto tile, const char* name) {
    pass.x = x;
    pass.dy = dy;
    pass.out = dw;
    conv_launch_implicit_gemm<decltype(tile)>(name, "conv2d_wgrad_split_reduce", pass,
                                              kSplitTarget, workspace, workspace_bytes, s);
  });
  if (db != nullptr) {
#if DC_GPU_CONFIG
    const LaunchConfig cfg{dim3(static_cast<unsigned int>(p.K)), dim3(kBiasThreads), 0, s};
    launch(conv_bias_grad_kernel<T, kBiasThreads>, "conv2d_bias_grad", cfg, dy, db, p.N, p.K,
           p.output_plane());
#else
    // The same sums without the block's barriers (kernels/conv_wgrad.cuh).
    const LaunchConfig cfg{dim3(static_cast<unsigned int>(p.K)), dim3(1), 0, s};
    launch(conv_bias_grad_serial_kernel<T, kBiasThreads>, "conv2d_bias_grad", cfg, dy, db, p.N,
           p.K, p.output_plane());
#endif
  }
}

template <typename T>
std::size_t conv2d_wgrad_workspace_bytes(const ConvParams& p, ConvAlgorithm algo) {
  if (const int tile = wgrad_winograd_tile(p, algo)) {
    return conv2d_winograd_workspace_bytes<T>(p, ConvPassKind::kWgrad, tile);
  }
  return visit_wgrad_variant<T>(p, ConvWorkspaceBytes{kSplitTarget});
}

template <typename T>
std::string conv2d_wgrad_variant(const ConvParams& p, ConvAlgorithm algo) {
  if (const int tile = wgrad_winograd_tile(p, algo)) return conv2d_winograd_variant(tile);
  return visit_wgrad_variant<T>(p, ConvVariantName{kSplitTarget, "conv2d_wgrad_"});
}

template void conv2d_wgrad<float>(const ConvParams&, const float*, const float*, float*, float*,
                                  void*, std::size_t, Stream, ConvAlgorithm);
template void conv2d_wgrad<double>(const ConvParams&, const double*, const double*, double*,
                                   double*, void*, std::size_t, Stream, ConvAlgorithm);
template std::size_t conv2d_wgrad_workspace_bytes<float>(const ConvParams&, ConvAlgorithm);
template std::size_t conv2d_wgrad_workspace_bytes<double>(const ConvParams&, ConvAlgorithm);
template std::string conv2d_wgrad_variant<float>(const ConvParams&, ConvAlgorithm);
template std::string conv2d_wgrad_variant<double>(const ConvParams&, ConvAlgorithm);

}  // namespace dc::ops
