// Launchers for kernels/lrn.cuh.
#include <cstdint>
#include <stdexcept>

#include "common/launch.cuh"
#include "kernels/lrn.cuh"
#include "ops/lrn.h"

namespace dc::ops {
namespace {

constexpr int kLrnThreadsPerBlock = 256;
// Grid-stride loops: a few waves of blocks are enough (as for ReLU).
constexpr std::int64_t kLrnMaxBlocks = 4096;

// Only what keeps the kernels in bounds: deepconv.ops.lrn checks the rest
// (finite alpha >= 0, beta, k > 0) with messages naming the argument.
void check(const LrnParams& lp) {
  if (lp.N < 0 || lp.C < 0 || lp.H < 0 || lp.W < 0) {
    throw std::invalid_argument("lrn: N, C, H and W must be >= 0");
  }
  if (lp.size < 1 || lp.size % 2 == 0) throw std::invalid_argument("lrn: size must be odd and >= 1");
}

LaunchConfig lrn_config(std::int64_t work_items, Stream s) {
  return LaunchConfig{dim3(blocks_for(work_items, kLrnThreadsPerBlock, kLrnMaxBlocks)),
                      dim3(kLrnThreadsPerBlock), 0, s};
}

}  // namespace

template <typename T>
void lrn_fprop(const T* x, T* y, const LrnParams& lp, Stream s) {
  check(lp);
  const std::int64_t n = lp.N * lp.C * lp.H * lp.W;
  if (n == 0) return;
  launch(lrn_fprop_kernel<T>, "lrn_fprop", lrn_config(n, s), x, y, lp);
}

template <typename T>
void lrn_bprop(const T* x, const T* y, const T* dy, T* dx, const LrnParams& lp, Stream s) {
  check(lp);
  const std::int64_t n = lp.N * lp.C * lp.H * lp.W;
  if (n == 0) return;
  launch(lrn_bprop_kernel<T>, "lrn_bprop", lrn_config(n, s), x, y, dy, dx, lp);
}

template void lrn_fprop<float>(const float*, float*, const LrnParams&, Stream);
template void lrn_fprop<double>(const double*, double*, const LrnParams&, Stream);
template void lrn_bprop<float>(const float*, const float*, const float*, float*, const LrnParams&,
                               Stream);
template void lrn_bprop<double>(const double*, const double*, const double*, double*,
                                const LrnParams&, Stream);

}  // namespace dc::ops
