// Launcher for the wgrad pass (and the bias gradient) of kernels/conv.cuh.
#include <cstddef>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/conv.cuh"
#include "ops/conv.h"

namespace dc::ops {
namespace {

// wgrad's GEMM is small (K/g x C/g*R*S) and its reduction (N*P*Q) long, so
// split-K does most of the work of filling the device: the reduction is cut
// into fixed chunks until about kTargetBlocks blocks run. Tiles as for fprop
// (ops/conv_fprop.cu).
#if defined(__CUDACC__)
template <typename T>
struct WgradTiles {
  using Conv = ConvTile<128, 64, 8, 8, 8, 3>;  // 3 per SM: up to 168 registers (see fprop)
};
template <>
struct WgradTiles<double> {
  using Conv = ConvTile<64, 64, 8, 4, 4, 2>;
};
constexpr int kTargetBlocks = 264;
constexpr int kMinChunk = 512;
constexpr int kBiasThreads = 256;
#else
template <typename T>
struct WgradTiles {
  using Conv = ConvTile<128, 64, 32, 8, 16>;
};
constexpr int kTargetBlocks = 16;
constexpr int kMinChunk = 2048;
constexpr int kBiasThreads = 64;
#endif

template <typename T>
ConvWgradPass<T> wgrad_pass(const ConvParams& p) {
  const std::string why = conv_check_params(p);
  if (!why.empty()) throw std::invalid_argument("conv2d_wgrad: " + why);
  return ConvWgradPass<T>{p};
}

}  // namespace

template <typename T>
void conv2d_wgrad(const ConvParams& p, const T* x, const T* dy, T* dw, T* db, void* workspace,
                  std::size_t workspace_bytes, Stream s) {
  using Tile = typename WgradTiles<T>::Conv;
  ConvWgradPass<T> pass = wgrad_pass<T>(p);
  pass.x = x;
  pass.dy = dy;
  pass.out = dw;
  const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
  conv_launch_implicit_gemm<Tile>("conv2d_wgrad_implicit_gemm", "conv2d_wgrad_split_reduce", pass,
                                  plan, workspace, workspace_bytes, s);
  if (db != nullptr) {
    const LaunchConfig cfg{dim3(static_cast<unsigned int>(p.K)), dim3(kBiasThreads), 0, s};
    launch(conv_bias_grad_kernel<T, kBiasThreads>, "conv2d_bias_grad", cfg, dy, db, p.N, p.K,
           p.output_plane());
  }
}

template <typename T>
std::size_t conv2d_wgrad_workspace_bytes(const ConvParams& p) {
  using Tile = typename WgradTiles<T>::Conv;
  const ConvWgradPass<T> pass = wgrad_pass<T>(p);
  return conv_implicit_gemm_workspace_bytes(
      pass, conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk));
}

template <typename T>
std::string conv2d_wgrad_variant(const ConvParams& p) {
  using Tile = typename WgradTiles<T>::Conv;
  const ConvWgradPass<T> pass = wgrad_pass<T>(p);
  const ConvSplitPlan plan = conv_implicit_gemm_plan<Tile>(pass, kTargetBlocks, kMinChunk);
  return plan.splits > 1 ? "implicit_gemm+split_k" : "implicit_gemm";
}

template void conv2d_wgrad<float>(const ConvParams&, const float*, const float*, float*, float*,
                                  void*, std::size_t, Stream);
template void conv2d_wgrad<double>(const ConvParams&, const double*, const double*, double*,
                                   double*, void*, std::size_t, Stream);
template std::size_t conv2d_wgrad_workspace_bytes<float>(const ConvParams&);
template std::size_t conv2d_wgrad_workspace_bytes<double>(const ConvParams&);
template std::string conv2d_wgrad_variant<float>(const ConvParams&);
template std::string conv2d_wgrad_variant<double>(const ConvParams&);

}  // namespace dc::ops
