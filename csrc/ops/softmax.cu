// Launchers for kernels/softmax.cuh.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "kernels/softmax.cuh"
#include "ops/softmax.h"

namespace dc::ops {
namespace {

// Threads per row: the row's k rounded up to whole warps, at most this many.
// On a GPU 256 (a 1000-class row is ~4 entries per thread). On the emulator
// every barrier visits each thread as a fiber, so fewer, busier threads
// cost less: 64.
#if DC_GPU_CONFIG
constexpr std::int64_t kSoftmaxMaxThreads = 256;
#else
constexpr std::int64_t kSoftmaxMaxThreads = 64;
#endif
static_assert(kSoftmaxMaxThreads % 32 == 0 && kSoftmaxMaxThreads <= 32 * kSoftmaxMaxWarps,
              "softmax blocks are whole warps, at most kSoftmaxMaxWarps of them");
// One block per row up to this many rows; beyond, blocks loop over rows.
constexpr std::int64_t kSoftmaxMaxBlocks = 65535;
// The batch mean: one block (n is a batch size, a few thousand at most).
constexpr int kSoftmaxMeanThreads = 256;

void check_sizes(std::int64_t n, std::int64_t k, const char* op) {
  if (n < 0 || k < 1) {
    throw std::invalid_argument(std::string(op) + ": need n >= 0 rows and k >= 1 classes");
  }
}

LaunchConfig row_config(std::int64_t n, std::int64_t k, Stream s) {
  std::int64_t threads = (k + 31) / 32 * 32;
  if (threads > kSoftmaxMaxThreads) threads = kSoftmaxMaxThreads;
  return LaunchConfig{dim3(blocks_for(n, 1, kSoftmaxMaxBlocks)),
                      dim3(static_cast<unsigned int>(threads)), 0, s};
}

}  // namespace

template <typename T>
void softmax_fprop(const T* logits, T* probs, std::int64_t n, std::int64_t k, Stream s) {
  check_sizes(n, k, "softmax");
  if (n == 0) return;
  launch(softmax_xent_fprop_kernel<T, std::int32_t>, "softmax_fprop", row_config(n, k, s), logits,
         static_cast<const std::int32_t*>(nullptr), probs, static_cast<T*>(nullptr), n, k);
}

template <typename T, typename L>
void softmax_xent_fprop(const T* logits, const L* labels, T* probs, T* losses, T* loss,
                        std::int64_t n, std::int64_t k, Stream s) {
  check_sizes(n, k, "softmax_cross_entropy");
  if (n < 1) throw std::invalid_argument("softmax_cross_entropy: need at least one row");
  launch(softmax_xent_fprop_kernel<T, L>, "softmax_xent_fprop", row_config(n, k, s), logits,
         labels, probs, losses, n, k);
  LaunchConfig mean_cfg{dim3(1), dim3(kSoftmaxMeanThreads), 0, s};
  launch(softmax_xent_mean_kernel<T>, "softmax_xent_mean", mean_cfg,
         static_cast<const T*>(losses), loss, n);
}

template <typename T, typename L>
void softmax_xent_bprop(const T* probs, const L* labels, T* dlogits, std::int64_t n,
                        std::int64_t k, T scale, Stream s) {
  check_sizes(n, k, "softmax_cross_entropy_backward");
  if (n == 0) return;
  launch(softmax_xent_bprop_kernel<T, L>, "softmax_xent_bprop", row_config(n, k, s), probs,
         labels, dlogits, n, k, scale);
}

#define DC_SOFTMAX_INSTANTIATE(T, L)                                                        \
  template void softmax_xent_fprop<T, L>(const T*, const L*, T*, T*, T*, std::int64_t,      \
                                         std::int64_t, Stream);                             \
  template void softmax_xent_bprop<T, L>(const T*, const L*, T*, std::int64_t, std::int64_t, \
                                         T, Stream);
DC_SOFTMAX_INSTANTIATE(float, std::int32_t)
DC_SOFTMAX_INSTANTIATE(float, std::int64_t)
DC_SOFTMAX_INSTANTIATE(double, std::int32_t)
DC_SOFTMAX_INSTANTIATE(double, std::int64_t)
#undef DC_SOFTMAX_INSTANTIATE

template void softmax_fprop<float>(const float*, float*, std::int64_t, std::int64_t, Stream);
template void softmax_fprop<double>(const double*, double*, std::int64_t, std::int64_t, Stream);

}  // namespace dc::ops
