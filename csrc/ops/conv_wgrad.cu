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
// the general ones of ops/conv_tiles.cuh (see wgrad_tile).
#if DC_GPU_CONFIG
constexpr ConvSplitTarget kSplitTarget{264, 512};
constexpr int kBiasThreads = 256;
#else
constexpr ConvSplitTarget kSplitTarget{16, 2048};
constexpr int kBiasThreads = 64;
#endif

// Whether Tile cuts wgrad's reduction exactly as the general tile does, so
// that dw keeps its bits with it: every output's sum then runs over the same
// steps in the same order (each thread accumulates its outputs step by
// step, whatever the block's shape), and split-K partials are reduced alike.
template <typename Tile, typename Tiles, typename Pass>
bool wgrad_split_as_general(const Pass& pass) {
  using General = typename Tiles::General;
  const ConvSplitPlan general = conv_implicit_gemm_plan<General>(pass, kSplitTarget);
  const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kSplitTarget);
  return plan.splits == general.splits && plan.k_per_split == general.k_per_split;
}

// Which general tile wgrad takes (on a GPU the three are one tile), when the
// split stays as the 128x64 tile's (see above):
//  - GeneralSmall (32x32) for GEMMs of at most 32 x 32: an RGB network's
//    first layer, 27 columns (C/g * R * S) and a long reduction;
//  - GeneralWide (128x128) for more than 64 columns.
// Measured side by side (dev/conv3x3_tiles vgg_small: benchmarks/train_step.py's
// layers, batch 16, CPU ms per call; 2-core EPYC shared with other jobs, so
// +-15% between runs of one tile):
//   3 -> 32 at 32x32:  128x64 7.3-8.6, 32x32x64 3.1-3.4 (three runs); 128x128
//                      lost (9.7 -> 16.3);
//   128x128 against 128x64 at 8x8, 4x4 and 2x2 (64->128, 128->128,
//   128->256, 256->256 x2): faster in 17 of 20 pairs over four runs, by
//   ~10% (e.g. 256->256 at 4x4 11.2 -> 10.2, 12.7 -> 11.9, 15.3 -> 9.8,
//   14.1 -> 12.4); 128->128 at 8x8 (Winograd's under auto) was mixed.
enum class WgradTile { kGeneral, kSmall, kWide };
template <typename Tiles, typename Pass>
WgradTile wgrad_tile(const Pass& pass) {
  if (pass.gemm_m() <= 32 && pass.gemm_n() <= 32 &&
      wgrad_split_as_general<typename Tiles::GeneralSmall, Tiles>(pass)) {
    return WgradTile::kSmall;
  }
  if (pass.gemm_n() > 64 && wgrad_split_as_general<typename Tiles::GeneralWide, Tiles>(pass)) {
    return WgradTile::kWide;
  }
  return WgradTile::kGeneral;
}

// Calls visit(pass, tile, kernel name) with wgrad's tile, like the other
// launchers' visit_<pass>_variant.
template <typename T, typename Visit>
auto visit_wgrad_variant(const ConvParams& p, Visit&& visit) {
  conv_require_well_formed(p, "conv2d_wgrad");
  using Tiles = ConvTiles<T>;
  const ConvWgradPass<T> pass{p};
  constexpr const char* kName = "conv2d_wgrad_implicit_gemm";
  switch (wgrad_tile<Tiles>(pass)) {
    case WgradTile::kSmall: return visit(pass, typename Tiles::GeneralSmall{}, kName);
    case WgradTile::kWide: return visit(pass, typename Tiles::GeneralWide{}, kName);
    case WgradTile::kGeneral: break;
  }
  return visit(pass, typename Tiles::General{}, kName);
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
    conv2d_wgrad_winograd<T>(p, tile, x, dy, dw, workspace, workspace_bytes, s);
  } else {
    visit_wgrad_variant<T>(p, [&](auto pass, auto tile, const char* name) {
      pass.x = x;
      pass.dy = dy;
      pass.out = dw;
      conv_launch_implicit_gemm<decltype(tile)>(name, "conv2d_wgrad_split_reduce", pass,
                                                kSplitTarget, workspace, workspace_bytes, s);
    });
  }
  // The bias gradient, whichever algorithm ran dw.
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
